"""The kb command handlers, through a parser built here (as the main CLI will register them)."""

import argparse
import json

import pytest

from rag_vqa.kb.cli import register
from rag_vqa.kb.errors import KBError
from rag_vqa.kb.imagerefs import url_to_relpath
from rag_vqa.kb.store import PassageStore

from .kbdata import ret_records, wiki_records, write_jsonl, write_lines


def run(*argv):
    parser = argparse.ArgumentParser(prog="rag-vqa")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands)
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_import_then_stats(tmp_path, capsys):
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(9))
    images = tmp_path / "images"
    (images / "images").mkdir(parents=True)
    (images / "images" / "1.jpg").write_bytes(b"x")
    assert run("kb", "import", "--format", "ret-jsonl", str(source), "--images", str(images),
               "--out", str(tmp_path / "kb")) == 0
    out = capsys.readouterr().out
    assert "imported 9 passages from 9 records" in out and str(tmp_path / "kb") in out

    assert run("kb", "stats", str(tmp_path / "kb"), "--check-images", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    with_image = [r for r in ret_records(9) if r["passage_image_path"]]
    assert stats["passages"] == 9 and stats["with_image"] == len(with_image)
    assert (stats["images_present"], stats["images_missing"]) == (1, len(with_image) - 1)
    assert stats["image_root"] == str(images.resolve()) and stats["format"] == "ret-jsonl"

    assert run("kb", "stats", str(tmp_path / "kb")) == 0
    text = capsys.readouterr().out
    assert "passages 9" in text and "text length" in text


def test_import_json_report_skip_bad_and_limit(tmp_path, capsys):
    source = write_lines(tmp_path / "kb.jsonl", ['{"passage_id": "a"}', "{bad",
                                                 '{"passage_id": "b"}', '{"passage_id": "c"}'])
    assert run("kb", "import", "--format", "ret-jsonl", str(source), "--out",
               str(tmp_path / "kb"), "--skip-bad", "--limit", "3", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["records_read"], report["passages_written"], report["bad_records"]) == (3, 2, 1)
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["report"] == report and manifest["params"]["limit"] == 3

    assert run("kb", "import", "--format", "ret-jsonl", str(source), "--out",
               str(tmp_path / "kb"), "--skip-bad", "--no-resume") == 0
    out = capsys.readouterr().out
    assert "skipped 1 malformed records" in out and "kb.jsonl, line 2" in out


def test_import_article_format_with_a_local_tokenizer(tmp_path, capsys):
    from retriever.tiny import tiny_clip_tokenizer

    tiny_clip_tokenizer().save_pretrained(tmp_path / "tok")
    source = write_jsonl(tmp_path / "wiki.jsonl.gz", wiki_records(4), gz=True)
    assert run("kb", "import", "--format", "infoseek-wiki", str(source), "--out",
               str(tmp_path / "kb"), "--tokenizer", str(tmp_path / "tok"), "--max-tokens", "50",
               "--overlap", "10", "--no-context-prefix") == 0
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["params"]["splitter"] == {"max_tokens": 50, "overlap": 10,
                                              "tokenizer": str(tmp_path / "tok"),
                                              "context_prefix": False}
    tokenizer = tiny_clip_tokenizer()
    with PassageStore.open(tmp_path / "kb") as store:
        for _, passage in store.iter_rows():
            assert len(tokenizer(passage.text, add_special_tokens=False)["input_ids"]) <= 50
            assert not passage.text.startswith(passage.title + ":")


@pytest.mark.parametrize("extra,words", [
    (["--overlap", "60"], "bad splitting options"),
    (["--tokenizer", "/no/such/tokenizer"], "cannot load tokenizer"),
])
def test_user_errors_are_value_errors(tmp_path, extra, words):
    source = write_jsonl(tmp_path / "wiki.jsonl", wiki_records(2))
    with pytest.raises(KBError, match=words) as info:
        run("kb", "import", "--format", "infoseek-wiki", str(source), "--out",
            str(tmp_path / "kb"), *extra)
    assert isinstance(info.value, ValueError)


def test_missing_source_and_kb_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        run("kb", "import", "--format", "ret-jsonl", str(tmp_path / "nope.jsonl"), "--out",
            str(tmp_path / "kb"))
    with pytest.raises(ValueError, match="not a folder"):
        run("kb", "stats", str(tmp_path / "nope"))


@pytest.mark.parametrize("extra", [["--format", "csv"], ["--format", "ret-jsonl", "--limit", "-1"],
                                   ["--format", "ret-jsonl", "--max-tokens", "0"]])
def test_bad_flags_are_argparse_errors(tmp_path, extra):
    with pytest.raises(SystemExit) as info:
        run("kb", "import", *extra, "x", "--out", str(tmp_path / "kb"))
    assert info.value.code == 2


def test_url_images_count_once_fetched(tmp_path, capsys):
    url = "https://upload.example.org/img0.png"
    source = write_jsonl(tmp_path / "wiki.jsonl", wiki_records(1))
    (tmp_path / "images").mkdir()
    run("kb", "import", "--format", "infoseek-wiki", str(source), "--out", str(tmp_path / "kb"),
        "--images", str(tmp_path / "images"))
    capsys.readouterr()
    run("kb", "stats", str(tmp_path / "kb"), "--check-images", "--json")
    assert json.loads(capsys.readouterr().out)["images_missing"] == 1
    target = tmp_path / "images" / url_to_relpath(url)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    run("kb", "stats", str(tmp_path / "kb"), "--check-images", "--json")
    assert json.loads(capsys.readouterr().out)["images_present"] == 1


def test_stats_verify_checks_the_digest_and_sqlite_integrity(tmp_path, capsys):
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(12))
    assert run("kb", "import", "--format", "ret-jsonl", str(source), "--out",
               str(tmp_path / "kb")) == 0
    assert run("kb", "stats", str(tmp_path / "kb"), "--verify", "--json") == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["verified"] == "full"
    sqlite = tmp_path / "kb" / "passages.sqlite"
    data = bytearray(sqlite.read_bytes())
    data[len(data) // 2] ^= 0x01                            # one flipped bit, same size
    sqlite.write_bytes(bytes(data))
    assert run("kb", "stats", str(tmp_path / "kb")) == 0  # the quick default sees the size only
    with pytest.raises(KBError, match="differs from the recorded digest"):
        run("kb", "stats", str(tmp_path / "kb"), "--verify")
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    manifest["counts"]["passages"] = 13
    (tmp_path / "kb" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KBError, match="modified after it was written"):
        run("kb", "stats", str(tmp_path / "kb"), "--verify", "none")

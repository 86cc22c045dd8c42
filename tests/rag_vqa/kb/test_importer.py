import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_vqa.kb.errors import (
    DuplicatePassageError,
    KBError,
    KBFormatError,
    KBStoreError,
    ResumeMismatchError,
)
from rag_vqa.kb.imagerefs import check_image_ref
from rag_vqa.kb.importer import MAX_BAD_EXAMPLES, import_kb
from rag_vqa.kb.manifest import sqlite_entry
from rag_vqa.kb.readers import iter_passages
from rag_vqa.kb.splitting import PassageSplitter
from rag_vqa.kb.store import PassageStore
from retriever.fileio import DIGEST, file_digest

from .kbdata import (
    evqa_kb,
    requires_pyarrow,
    ret_records,
    wiki_records,
    write_evqa,
    write_jsonl,
    write_lines,
    write_parquet,
)

REPO = Path(__file__).resolve().parents[3]


def splitter():
    return PassageSplitter(max_tokens=40, overlap=8)


def rows(folder):
    with PassageStore.open(folder) as store:
        return list(store.iter_rows())


def write_source(tmp_path, fmt):
    if fmt == "ret-jsonl":
        return write_jsonl(tmp_path / "kb.jsonl", ret_records(30))
    if fmt == "m2kr":
        records = [{"passage_id": f"m{i}", "passage_content": f"text {i}", "language": "en"}
                   for i in range(30)]
        return write_parquet(tmp_path / "passages.parquet", records, row_group_size=7)
    if fmt == "infoseek-wiki":
        return write_jsonl(tmp_path / "Wiki6M.jsonl.gz", wiki_records(30), gz=True)
    return write_evqa(tmp_path / "encyclopedic_kb_wiki.json", evqa_kb(10))


@pytest.mark.parametrize("fmt", ["ret-jsonl", pytest.param("m2kr", marks=requires_pyarrow),
                                 "infoseek-wiki", "evqa-kb"])
def test_import_each_format_matches_the_reader(tmp_path, fmt):
    source = write_source(tmp_path, fmt)
    (tmp_path / "images").mkdir()
    report = import_kb(fmt, source, tmp_path / "kb", tmp_path / "images", splitter=splitter())
    expected = list(iter_passages(fmt, source, splitter=splitter()))
    expected = [dataclasses.replace(p, image=check_image_ref(p.image) if p.image else None)
                for p in expected]
    assert [p for _, p in rows(tmp_path / "kb")] == expected
    assert report.passages_written == len(expected) and report.resumed_from == 0
    assert report.records_read == (10 if fmt == "evqa-kb" else 30)
    assert report.articles == len({p.article_id for p in expected})
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["format"] == fmt
    assert manifest["image_root"] == str((tmp_path / "images").resolve())
    sqlite = sqlite_entry(manifest)
    assert sqlite[DIGEST] == file_digest(tmp_path / "kb" / "passages.sqlite")
    assert manifest["report"] == report.to_dict()
    assert manifest["source"]["files"][0]["name"] == source.name
    assert manifest["source"]["files"][0]["size"] == source.stat().st_size
    assert manifest["params"]["splitter"] == (splitter().config() if fmt in (
        "infoseek-wiki", "evqa-kb") else None)


def bad_lines_source(tmp_path, bad=15):
    lines = [json.dumps(r) for r in ret_records(40)]
    for k in range(bad):
        lines.insert(2 * k + 1, json.dumps({"passage_text": f"no id {k}"}))
    return write_lines(tmp_path / "kb.jsonl", lines)


def test_bad_records_stop_the_import_or_are_skipped_and_counted(tmp_path):
    source = bad_lines_source(tmp_path)
    with pytest.raises(KBFormatError, match=r"kb\.jsonl, line 2: field 'passage_id'"):
        import_kb("ret-jsonl", source, tmp_path / "kb")
    report = import_kb("ret-jsonl", source, tmp_path / "kb2", skip_bad=True)
    assert report.bad_records == 15 and report.passages_written == 40
    assert len(report.bad_examples) == MAX_BAD_EXAMPLES
    assert report.bad_examples[0] == {"location": "kb.jsonl, line 2",
                                      "reason": "passage_id: missing required field"}


def test_a_failed_import_resumes_with_skip_bad_to_the_same_result(tmp_path):
    lines = [json.dumps(r) for r in ret_records(60)]
    lines.insert(45, "{broken json")
    source = write_lines(tmp_path / "kb.jsonl", lines)
    with pytest.raises(KBFormatError, match="line 46"):
        import_kb("ret-jsonl", source, tmp_path / "kb", batch_size=4)
    with pytest.raises(KBStoreError, match="unfinished"):
        PassageStore.open(tmp_path / "kb")
    provisional = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert provisional["complete"] is False and provisional["format"] == "ret-jsonl"
    resumed = import_kb("ret-jsonl", source, tmp_path / "kb", skip_bad=True, batch_size=4)
    fresh = import_kb("ret-jsonl", source, tmp_path / "fresh", skip_bad=True)
    assert resumed.resumed_from == 44  # the batches committed before the bad line
    assert rows(tmp_path / "kb") == rows(tmp_path / "fresh")
    assert resumed.bad_records == fresh.bad_records == 1


def test_unsafe_image_paths(tmp_path):
    records = ret_records(6)
    records[2]["passage_image_path"] = "../../etc/passwd"
    records[4]["passage_image_path"] = "/abs/x.jpg"
    records[5]["passage_image_path"] = "a/./b/../c.jpg"
    source = write_jsonl(tmp_path / "kb.jsonl", records)
    with pytest.raises(KBFormatError, match=r"line 3: field 'passage_image_path': refused"):
        import_kb("ret-jsonl", source, tmp_path / "kb")
    report = import_kb("ret-jsonl", source, tmp_path / "kb", skip_bad=True, resume=False)
    assert report.refused_image_paths == 2 and report.bad_records == 0
    got = {p.passage_id: p.image for _, p in rows(tmp_path / "kb")}
    assert got["p2"] is None and got["p4"] is None and got["p5"] == "a/c.jpg"
    assert report.passages_written == 6


def test_duplicate_ids(tmp_path):
    records = ret_records(5) + [{"passage_id": "p1", "passage_text": "again"}]
    source = write_jsonl(tmp_path / "kb.jsonl", records)
    with pytest.raises(DuplicatePassageError, match=r"'p1' \(kb\.jsonl, line 6\)"):
        import_kb("ret-jsonl", source, tmp_path / "kb")
    report = import_kb("ret-jsonl", source, tmp_path / "kb", skip_bad=True)
    assert report.bad_records == 1 and report.passages_written == 5
    assert "duplicate passage_id 'p1'" in report.bad_examples[0]["reason"]


def test_limit(tmp_path):
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(30))
    report = import_kb("ret-jsonl", source, tmp_path / "kb", limit=7)
    assert report.records_read == 7 and [p.passage_id for _, p in rows(tmp_path / "kb")] == \
        [f"p{i}" for i in range(7)]
    with pytest.raises(KBError, match="limit"):
        import_kb("ret-jsonl", source, tmp_path / "kb2", limit=-1)


def test_existing_folders(tmp_path):
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(10))
    import_kb("ret-jsonl", source, tmp_path / "kb")
    with pytest.raises(KBStoreError, match="already holds a complete"):
        import_kb("ret-jsonl", source, tmp_path / "kb")
    write_jsonl(source, ret_records(12))
    assert import_kb("ret-jsonl", source, tmp_path / "kb", resume=False).passages_written == 12
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(KBStoreError, match="not a knowledge-base folder"):
        import_kb("ret-jsonl", source, tmp_path / "other")
    with pytest.raises(KBError, match="image root not found"):
        import_kb("ret-jsonl", source, tmp_path / "kb3", tmp_path / "no-images")


def interrupted(tmp_path, source, fmt="infoseek-wiki", **kwargs):
    """An unfinished import: the first bad record stops it after some committed batches."""
    with pytest.raises(KBFormatError):
        import_kb(fmt, source, tmp_path / "kb", batch_size=3, **kwargs)


def test_resume_refuses_a_different_source_or_parameters(tmp_path):
    records = wiki_records(20)
    records[15] = {"no": "id"}
    source = write_jsonl(tmp_path / "wiki.jsonl", records)
    interrupted(tmp_path, source, splitter=splitter())
    with pytest.raises(ResumeMismatchError, match="splitter.*--no-resume"):
        import_kb("infoseek-wiki", source, tmp_path / "kb", splitter=PassageSplitter())
    with pytest.raises(ResumeMismatchError, match="limit"):
        import_kb("infoseek-wiki", source, tmp_path / "kb", splitter=splitter(), limit=2)
    write_jsonl(source, records[:-1])
    with pytest.raises(ResumeMismatchError, match="source"):
        import_kb("infoseek-wiki", source, tmp_path / "kb", splitter=splitter(), skip_bad=True)
    report = import_kb("infoseek-wiki", source, tmp_path / "kb", splitter=splitter(),
                       skip_bad=True, resume=False)
    assert report.resumed_from == 0 and report.bad_records == 1


# -- resuming after kill -9 ----------------------------------------------------------------------

CHILD = """
import sys
from rag_vqa.kb import store as store_module
from rag_vqa.kb.importer import import_kb
from rag_vqa.kb.splitting import PassageSplitter

set_meta = store_module.PassageStore.set_meta

def paced_set_meta(self, values):
    # called inside each batch's transaction, before its COMMIT: report, then wait for the test
    set_meta(self, values)
    print("batch", values.get("records_done"), flush=True)
    sys.stdin.readline()

store_module.PassageStore.set_meta = paced_set_meta
fmt, source, out = sys.argv[1:4]
import_kb(fmt, source, out, skip_bad=True, batch_size=3,
          splitter=PassageSplitter(max_tokens=40, overlap=8), progress=False)
print("done", flush=True)
"""


def kill_import(fmt, source, out, batches, in_transaction, rng):
    """Run the import in a child process, let ``batches`` transactions commit, then SIGKILL it:
    while the next transaction is open (``in_transaction``), or at a random moment after.
    Returns the records_done of the last transaction allowed to commit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, fmt, str(source), str(out)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    committed = None
    try:
        for _ in range(batches):
            line = child.stdout.readline()
            assert line.startswith("batch "), f"child ended: {line!r} {child.stderr.read()}"
            value = line.split()[1]  # None for the store's own creation metadata
            committed = committed if value == "None" else int(value)
            child.stdin.write("go\n")
            child.stdin.flush()
        if in_transaction:
            assert child.stdout.readline().startswith("batch ")  # blocked before its COMMIT
        else:
            time.sleep(rng.uniform(0, 0.01))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            try:
                stream.close()
            except BrokenPipeError:
                pass
    assert child.returncode == -signal.SIGKILL
    return committed


def resume_sources(tmp_path):
    # bad records and refused images early (before the first kill: their counts must survive
    # it) and late (counted after the resume)
    wiki = wiki_records(120)
    wiki[2] = wiki[100] = {"wikipedia_title": "no id"}
    wiki[4]["wikipedia_image_url"] = "../outside.jpg"
    kb = evqa_kb(60)
    keys = list(kb)
    kb[keys[1]]["section_texts"] = kb[keys[55]]["section_texts"] = 3
    kb[keys[2]]["image_urls"][0] = "/etc/passwd"
    return {"infoseek-wiki": write_jsonl(tmp_path / "wiki.jsonl.gz", wiki, gz=True),
            "evqa-kb": write_evqa(tmp_path / "kb.json", kb)}


@pytest.mark.parametrize("fmt", ["infoseek-wiki", "evqa-kb"])
def test_resume_after_sigkill_equals_an_uninterrupted_import(tmp_path, fmt):
    source = resume_sources(tmp_path)[fmt]
    out = tmp_path / "killed"
    rng = random.Random(fmt)
    committed = kill_import(fmt, source, out, 10, in_transaction=True, rng=rng)
    with pytest.raises(KBStoreError, match="unfinished"):
        PassageStore.open(out)
    store = PassageStore.open_unfinished(out)
    done, counters = store.get_meta("records_done"), store.get_meta("counters")
    store.close()
    assert done == committed  # the open transaction was lost whole
    assert 5 < done < 50 and counters["bad_records"] == counters["refused_image_paths"] == 1
    kill_import(fmt, source, out, 12, in_transaction=False, rng=rng)  # killed again, resuming
    resumed = import_kb(fmt, source, out, skip_bad=True, splitter=splitter(), batch_size=3)
    reference = import_kb(fmt, source, tmp_path / "reference", skip_bad=True,
                          splitter=splitter())
    assert resumed.resumed_from > 0
    assert rows(out) == rows(tmp_path / "reference")
    for name in ("records_read", "passages_written", "articles", "bad_records", "bad_examples",
                 "refused_image_paths"):
        assert getattr(resumed, name) == getattr(reference, name), name
    assert resumed.bad_records == 2 and resumed.refused_image_paths == 1
    with PassageStore.open(out) as store:  # rows dense 0..n-1
        assert [r for r, _ in store.iter_rows()] == list(range(len(store)))


def test_a_store_killed_before_its_first_commit_starts_over(tmp_path):
    PassageStore.create(tmp_path / "kb").close()  # no import parameters committed yet
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(3))
    report = import_kb("ret-jsonl", source, tmp_path / "kb")
    assert report.resumed_from == 0 and report.passages_written == 3


def test_odd_records_in_one_batch_are_skipped_and_counted_and_the_rest_kept(tmp_path):
    from .test_readers import BAD_RET_LINES

    good = ret_records(12)
    images = ["javascript:alert(1)", "data:image/png;base64,iVBORw0KGgo=", "file:///etc/passwd",
              " javascript:alert(1)", "a\nb.jpg"]
    for record, image in zip(good, images):
        record["passage_image_path"] = image
    lines = [json.dumps(r) for r in good]
    for k, (line, _) in enumerate(BAD_RET_LINES):
        lines.insert(1 + 2 * k, line)
    source = write_lines(tmp_path / "kb.jsonl", lines)
    report = import_kb("ret-jsonl", source, tmp_path / "kb", skip_bad=True,
                       batch_size=len(lines))  # one batch holds them all
    assert report.bad_records == len(BAD_RET_LINES)
    assert report.refused_image_paths == len(images)
    stored = dict((p.passage_id, p.image) for _, p in rows(tmp_path / "kb"))
    assert list(stored) == [r["passage_id"] for r in good]
    assert [stored[r["passage_id"]] for r in good[:len(images)]] == [None] * len(images)
    for line, field in BAD_RET_LINES:  # without --skip-bad: stopped with the record's message
        path = write_lines(tmp_path / "one.jsonl", [json.dumps(good[-1]), line])
        with pytest.raises(KBFormatError, match=r"one\.jsonl, line 2: ") as info:
            import_kb("ret-jsonl", path, tmp_path / "strict", resume=False)
        assert info.value.field == field
    for image in images:
        path = write_jsonl(tmp_path / "img.jsonl", [{"passage_id": "x",
                                                     "passage_image_path": image}])
        with pytest.raises(KBFormatError, match="field 'passage_image_path': refused"):
            import_kb("ret-jsonl", path, tmp_path / "strict", resume=False)


def test_an_image_root_that_is_not_a_folder_says_what_it_is(tmp_path):
    source = write_jsonl(tmp_path / "kb.jsonl", ret_records(2))
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    for root, words in ((tmp_path / "fifo", r"is a FIFO \(named pipe\)"),
                        (tmp_path / "file", "is a file, not a folder"), ("/dev/zero", "device")):
        with pytest.raises(KBError, match=words):
            import_kb("ret-jsonl", source, tmp_path / "kb", root)


def test_reports_of_skipped_records_stay_valid_utf8(tmp_path):
    kb = evqa_kb(2)
    text = json.dumps(kb)[:-1] + ', "https://x/\\ud800": {"section_texts": ["y"]}, ' \
        '"https://x/y": {"section_texts": ["z"], "\\udc80": ["\\udc80"]}}'
    source = tmp_path / "kb.json"
    source.write_text(text)
    report = import_kb("evqa-kb", source, tmp_path / "kb", skip_bad=True, splitter=splitter())
    assert report.bad_records == 2 and report.articles == 2
    manifest = (tmp_path / "kb" / "manifest.json").read_bytes().decode("utf-8")  # strict
    assert "https://x/\\\\ud800" in manifest

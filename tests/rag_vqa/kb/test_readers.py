import dataclasses
import json

import pytest

from rag_vqa.kb.errors import KBFormatError, KBSourceError
from rag_vqa.kb.readers import iter_passages, iter_records, source_files
from rag_vqa.kb.splitting import PassageSplitter

from .kbdata import (
    evqa_article,
    evqa_kb,
    requires_pyarrow,
    ret_records,
    sentence_text,
    wiki_records,
    write_evqa,
    write_jsonl,
    write_lines,
    write_parquet,
)

SPLITTER = PassageSplitter(max_tokens=40, overlap=8)


# -- ret-jsonl ---------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_ret_jsonl_passages_one_per_line(tmp_path, gz):
    records = ret_records(12)
    records[1]["passage_text"] = None
    records[2]["passage_id"] = 7002
    records[3]["entity"] = {"qid": "Q1"}
    del records[4]["passage_image_path"]
    path = write_jsonl(tmp_path / ("kb.jsonl.gz" if gz else "kb.jsonl"), records, gz=gz)
    passages = list(iter_passages("ret-jsonl", path))
    assert [p.passage_id for p in passages] == [str(r["passage_id"]) for r in records]
    for passage, record in zip(passages, records):
        assert passage.text == (record["passage_text"] or "")
        assert passage.image == record.get("passage_image_path")
        assert passage.article_id == passage.passage_id
    assert passages[3].extra == {"entity": {"qid": "Q1"}} and passages[0].extra is None


@pytest.mark.parametrize("line,field", [
    ('{"passage_text": "no id"}', "passage_id"),
    ('{"passage_id": "", "passage_text": "x"}', "passage_id"),
    ('{"passage_id": true, "passage_text": "x"}', "passage_id"),
    ('{"passage_id": "p", "passage_text": 5}', "passage_text"),
    ('{"passage_id": "p", "passage_image_path": ["a.jpg"]}', "passage_image_path"),
    ('{"passage_id": "p", ', None),
])
def test_ret_jsonl_malformed_lines_name_file_line_and_field(tmp_path, line, field):
    path = write_lines(tmp_path / "kb.jsonl", [json.dumps(ret_records(1)[0]), "", line])
    with pytest.raises(KBFormatError) as info:
        list(iter_passages("ret-jsonl", path))
    error = info.value
    assert (error.location, error.field) == ("line 3", field)
    assert str(error).startswith(f"{path}, line 3: ")
    if field:
        assert repr(field) in str(error)
    assert [p.passage_id for p in iter_passages("ret-jsonl", path, skip_bad=True)] == ["p0"]


def test_records_are_numbered_and_resumable_from_any_start(tmp_path):
    lines = [json.dumps(r) for r in ret_records(10)]
    lines.insert(4, "not json")
    path = write_lines(tmp_path / "kb.jsonl", lines)
    everything = list(iter_records("ret-jsonl", path))
    assert [r.index for r in everything] == list(range(11))
    assert everything[4].error is not None and not everything[4].passages
    for start in range(12):
        tail = list(iter_records("ret-jsonl", path, start=start))
        assert [(r.index, r.location, r.passages) for r in tail] == \
            [(r.index, r.location, r.passages) for r in everything[start:]]


# -- m2kr ----------------------------------------------------------------------------------------

def m2kr_rows(n, start=0):
    return [{"passage_id": f"WikiWeb_{i}", "passage_content": sentence_text(i, 15),
             "language": "en", "title": f"Title {i}" if i % 2 else None,
             "__index_level_0__": i, "source_name": "infoseek"} for i in range(start, n)]


@requires_pyarrow
def test_m2kr_parquet_jsonl_and_shard_folder(tmp_path):
    rows = m2kr_rows(30)
    folder = tmp_path / "shards"
    folder.mkdir()
    write_parquet(folder / "train-00001.parquet", rows[10:20], row_group_size=3)
    write_parquet(folder / "train-00000.parquet", rows[:10], row_group_size=3)
    write_jsonl(folder / "train-00002.jsonl.gz", rows[20:], gz=True)
    (folder / "README.md").write_text("ignored")
    passages = list(iter_passages("m2kr", folder))
    assert [p.passage_id for p in passages] == [r["passage_id"] for r in rows]
    for passage, row in zip(passages, rows):
        assert (passage.text, passage.title, passage.language) == \
            (row["passage_content"], row["title"], "en")
        assert passage.extra == {"source_name": "infoseek"}
        # the title is the article (entity recall), the passage id where there is none
        assert passage.article_id == (row["title"] or row["passage_id"])
    records = list(iter_records("m2kr", folder))
    assert [r.index for r in records] == list(range(30))
    assert records[12].location == "row 3" and records[12].path.endswith("train-00001.parquet")
    for start in (0, 7, 10, 11, 25, 30):
        assert [r.passages for r in iter_records("m2kr", folder, start=start)] == \
            [r.passages for r in records[start:]]


@requires_pyarrow
def test_m2kr_requires_passage_content(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", [{"passage_id": "a", "language": "en"}])
    with pytest.raises(KBFormatError, match=r"row 1: field 'passage_content': missing"):
        list(iter_passages("m2kr", path))


# -- infoseek-wiki -------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_infoseek_articles_are_split_with_image_on_first_passage(tmp_path, gz):
    records = wiki_records(6)
    records[1]["wikipedia_content"] = ""
    records[2]["extra_field"] = [1, 2]
    records[3]["wikipedia_url"] = "https://en.wikipedia.org/wiki/A3"
    path = write_jsonl(tmp_path / ("Wiki6M.jsonl.gz" if gz else "wiki.jsonl"), records, gz=gz)
    records_out = list(iter_records("infoseek-wiki", path, splitter=SPLITTER))
    for record, source in zip(records_out, records, strict=True):
        qid, title = source["wikidata_id"], source["wikipedia_title"]
        expected = SPLITTER.split_section(source["wikipedia_content"], article_id=qid,
                                          section_index=0, title=title,
                                          url=source.get("wikipedia_url")) or \
            [SPLITTER.context_passage(article_id=qid, section_index=0, title=title)]
        image = source.get("wikipedia_image_url")
        if image:
            expected[0] = dataclasses.replace(expected[0], image=image)
        assert record.passages == expected
        assert all(p.extra is None for p in record.passages)
    assert len(records_out[3].passages) > 1 and records_out[1].passages[0].text == "Article 1"
    assert [p.image for p in records_out[0].passages][1:] == [None] * \
        (len(records_out[0].passages) - 1)


def test_infoseek_requires_wikidata_id(tmp_path):
    path = write_jsonl(tmp_path / "wiki.jsonl.gz", [{"wikipedia_title": "x"}], gz=True)
    with pytest.raises(KBFormatError, match=r"line 1: field 'wikidata_id': missing required"):
        list(iter_passages("infoseek-wiki", path))


# -- evqa-kb -------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz,indent,chunk_size", [(False, None, 1 << 20), (True, 2, 7),
                                                 (False, None, 3)])
def test_evqa_articles_sections_and_images(tmp_path, gz, indent, chunk_size):
    kb = evqa_kb(4)
    kb["https://en.wikipedia.org/wiki/Entity_2"]["section_texts"][2] = ""  # images on empty section
    path = write_evqa(tmp_path / ("kb.json.gz" if gz else "kb.json"), kb, gz=gz, indent=indent)
    records = list(iter_records("evqa-kb", path, splitter=SPLITTER, chunk_size=chunk_size))
    assert [r.location for r in records] == [f"key {k!r}" for k in kb]
    for record, (url, article) in zip(records, kb.items()):
        passages = record.passages
        assert {p.article_id for p in passages} == {p.url for p in passages} == {url}
        for s, text in enumerate(article["section_texts"]):
            section = [p for p in passages if p.passage_id.startswith(f"{url}#{s}-")]
            expected = SPLITTER.split_section(text, article_id=url, section_index=s,
                                              title=article["title"],
                                              section=article["section_titles"][s], url=url)
            assert [p.text for p in section][:len(expected)] == [p.text for p in expected]
            images = [(u, d) for u, d, i in zip(article["image_urls"],
                                                article["image_reference_descriptions"],
                                                article["image_section_indices"]) if i == s]
            if images:
                assert section[0].image == images[0][0]
                assert section[0].extra == {"image_urls": [u for u, _ in images],
                                            "image_reference_descriptions": [d for _, d in images]}
                assert all(p.image is None for p in section[1:])
            else:
                assert all(p.image is None and p.extra is None for p in section)
    empty = [p for p in records[2].passages if p.passage_id.startswith(
        "https://en.wikipedia.org/wiki/Entity_2#2-")]
    assert [p.text for p in empty] == ["Entity 2 - Section 2"]


def test_evqa_bad_article_is_a_record_error_and_later_ones_still_read(tmp_path):
    kb = evqa_kb(3)
    first = next(iter(kb))
    kb[first]["section_texts"] = "not a list"
    kb["https://x/odd"] = ["not", "an", "object"]
    path = write_evqa(tmp_path / "kb.json", kb)
    records = list(iter_records("evqa-kb", path, splitter=SPLITTER, chunk_size=5))
    assert records[0].error.field == "section_texts" and repr(first) in str(records[0].error)
    assert records[3].error is not None and "JSON object" in str(records[3].error)
    assert records[1].passages and records[2].passages
    assert len(list(iter_passages("evqa-kb", path, splitter=SPLITTER, skip_bad=True))) == \
        sum(len(r.passages) for r in records)


def test_evqa_malformed_json_is_fatal_with_key(tmp_path):
    text = json.dumps(evqa_kb(3))
    second = list(evqa_kb(3))[1]
    at = text.index('"section_texts"', text.index(second))  # break the second article only
    broken = text[:at] + '"section_texts" "oops"' + text[at + len('"section_texts"'):]
    path = tmp_path / "kb.json"
    path.write_text(broken)
    records = iter_records("evqa-kb", path, splitter=SPLITTER, chunk_size=11)
    assert next(records).passages
    with pytest.raises(KBFormatError, match=rf"key {second!r}, near character \d+"):
        next(records)


def test_evqa_lenient_about_image_lists(tmp_path):
    article = evqa_article(0, sections=2)
    article["image_section_indices"] = [5]            # out of range, then missing
    article["image_reference_descriptions"] = []
    path = write_evqa(tmp_path / "kb.json", {"u": article})
    passages = list(iter_passages("evqa-kb", path, splitter=SPLITTER))
    assert passages[0].image == article["image_urls"][0]
    assert passages[0].extra["image_urls"] == article["image_urls"]
    assert passages[0].extra["image_reference_descriptions"] == [None, None, None]


def test_unknown_format_and_wrong_source(tmp_path):
    with pytest.raises(KBSourceError, match="unknown knowledge-base format"):
        source_files("csv", tmp_path)
    with pytest.raises(KBSourceError, match="single file"):
        list(iter_records("evqa-kb", tmp_path))
    with pytest.raises(KBSourceError, match="not found"):
        list(iter_records("ret-jsonl", tmp_path / "missing.jsonl"))


# -- one bad record is that record's error, in every format ----------------------------------

DEEP = "[" * 5000 + "]" * 5000
BAD_RET_LINES = [  # (line, field named in the error)
    ('{"passage_id": "p", "passage_image_path": 7}', "passage_image_path"),
    ('{"passage_id": "p", "x": ' + DEEP + "}", None),
    ('{"passage_id": "p", "x": [' + "[" * 150 + "]" * 150 + "]}", "x"),
    ('{"passage_id": "p", "passage_text": "\\ud800"}', "passage_text"),
    ('{"passage_id": "p\\u0000q"}', "passage_id"),
    ('{"passage_id": "p\\nq"}', "passage_id"),
    ('{"passage_id": "p\\u2028q"}', "passage_id"),
    (json.dumps({"passage_id": "p" * 100_000}), "passage_id"),
    ('{"passage_id": 1.5}', "passage_id"),
    ('{"passage_id": {"a": 1}}', "passage_id"),
    ('{"passage_id": "p", "n": ' + "9" * 5000 + "}", None),
]


@pytest.mark.parametrize("line,field", BAD_RET_LINES)
def test_odd_values_are_record_errors_and_the_neighbours_are_kept(tmp_path, line, field):
    good = [json.dumps(r) for r in ret_records(3)]
    path = write_lines(tmp_path / "kb.jsonl", [good[0], line, good[1], good[2]])
    records = list(iter_records("ret-jsonl", path))
    assert [r.error is None for r in records] == [True, False, True, True]
    error = records[1].error
    assert isinstance(error, KBFormatError) and error.location == "line 2"
    assert error.field == field and str(error).startswith(f"{path}, line 2: ")
    assert len(str(error)) < 500  # a 100k-character id is not echoed back whole
    assert [p.passage_id for p in iter_passages("ret-jsonl", path, skip_bad=True)] == \
        ["p0", "p1", "p2"]


def test_a_byte_order_mark_is_accepted_in_jsonl(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n"
                                               for r in ret_records(2)).encode())
    assert [p.passage_id for p in iter_passages("ret-jsonl", path)] == ["p0", "p1"]


@pytest.mark.parametrize("value,field", [
    (DEEP, None), ('{"title": "\\udc80", "section_texts": ["x"]}', "title"),
    ('{"section_texts": ["\\ud83d"]}', "section_texts"),
    ('{"section_texts": [' + "9" * 5000 + "]}", None),
    ('{"section_texts": ["x"], "\\ud800": ["\\ud800"]}', "(a key)"),
])
def test_evqa_unusable_article_is_skipped_and_the_stream_goes_on(tmp_path, value, field):
    kb = evqa_kb(2)
    first, second = kb
    text = "{" + f"{json.dumps(first)}: {json.dumps(kb[first])}, \"https://x/bad\": {value}, " \
                 f"{json.dumps(second)}: {json.dumps(kb[second])}" + "}"
    path = tmp_path / "kb.json"
    path.write_text(text)
    for chunk_size in (3, 1 << 20):
        records = list(iter_records("evqa-kb", path, splitter=SPLITTER, chunk_size=chunk_size))
        assert [r.error is None for r in records] == [True, False, True]
        assert records[1].error.field == field and "'https://x/bad'" in str(records[1].error)
        assert records[2].passages[0].article_id == second


@pytest.mark.parametrize("key", ["https://x/a\nb", "https://x/\x00", "u" * 2000, "\udc80"])
def test_evqa_article_keys_follow_the_id_rules(tmp_path, key):
    kb = {key: evqa_article(0), "https://ok": evqa_article(1)}
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(kb))
    records = list(iter_records("evqa-kb", path, splitter=SPLITTER))
    assert records[0].error is not None and "article key" in str(records[0].error)
    assert len(str(records[0].error)) < 500 and records[1].passages


def test_evqa_invalid_utf8_costs_one_article(tmp_path):
    kb = evqa_kb(3)
    keys = list(kb)
    kb[keys[1]]["title"] = "MARK"
    data = json.dumps(kb, ensure_ascii=False).encode().replace(b"MARK", b"bad \xff byte")
    path = tmp_path / "kb.json"
    path.write_bytes(b"\xef\xbb\xbf" + data)
    records = list(iter_records("evqa-kb", path, splitter=SPLITTER, chunk_size=5))
    assert [r.error is None for r in records] == [True, False, True]
    assert records[1].error.field == "title" and "UTF-8" in str(records[1].error)


@requires_pyarrow
@pytest.mark.parametrize("column,values,field", [
    ("passage_id", [b"bytes-id", b"two"], "passage_id"),
    ("passage_id", [1.5, 2.5], "passage_id"),
    ("passage_content", [[1, 2], [3]], "passage_content"),
    ("passage_content", [{"a": "x"}, {"a": "y"}], "passage_content"),
    ("title", [7, 8], "title"),
    ("passage_id", ["ok\nid", "ok\x00id"], "passage_id"),
])
def test_m2kr_parquet_wrong_types_are_record_errors(tmp_path, column, values, field):
    rows = [{"passage_id": f"m{i}", "passage_content": f"text {i}", "title": f"t{i}"}
            for i in range(2)]
    for row, value in zip(rows, values):
        row[column] = value
    path = write_parquet(tmp_path / "p.parquet", rows)
    records = list(iter_records("m2kr", path))
    assert [(r.location, r.error.field) for r in records] == [("row 1", field), ("row 2", field)]

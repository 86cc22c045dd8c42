import gzip
import json
from pathlib import Path

import pytest

from rag_vqa.kb.errors import KBFormatError, KBSourceError
from rag_vqa.kb.sources import fingerprint, iter_jsonl, iter_parquet, list_files, open_text

from .kbdata import requires_pyarrow, write_jsonl, write_lines, write_parquet


def drain(generator):
    """Items of a record generator and its return value (the record count)."""
    items = []
    while True:
        try:
            items.append(next(generator))
        except StopIteration as stop:
            return items, stop.value


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_records_skip_empty_lines_and_keep_line_numbers(tmp_path, gz):
    path = write_lines(tmp_path / "a.jsonl", ['{"a": 1}', "", "   ", '{"a": 2}', "[1]", "{oops",
                                              '{"a": 3}'], gz=gz)
    items, count = drain(iter_jsonl(path))
    assert count == 5
    assert [(i, loc) for i, loc, _, _ in items] == [(0, "line 1"), (1, "line 4"), (2, "line 5"),
                                                  (3, "line 6"), (4, "line 7")]
    assert items[0][2] == {"a": 1} and items[0][3] is None
    assert "JSON object" in str(items[2][3]) and "invalid JSON" in str(items[3][3])


def test_jsonl_skip_counts_without_decoding(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", ["{broken", '{"a": 1}', '{"a": 2}'])
    items, count = drain(iter_jsonl(path, skip=2))
    assert count == 3 and [(i, v) for i, _, v, _ in items] == [(2, {"a": 2})]


def test_invalid_utf8_is_a_record_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": "\xff"}\n{"a": 1}\n')
    items, _ = drain(iter_jsonl(path))
    assert "UTF-8" in str(items[0][3]) and items[1][2] == {"a": 1}


def test_truncated_gzip_is_fatal_and_located(tmp_path):
    data = gzip.compress("".join(json.dumps({"i": i, "pad": "x" * 50}) + "\n"
                                 for i in range(2000)).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KBFormatError, match=r"cut\.jsonl\.gz, line \d+: corrupt or truncated"):
        drain(iter_jsonl(path))


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "plain-name.json"
    path.write_bytes(gzip.compress(b'\xef\xbb\xbf{"k": 1}'))
    with open_text(path) as handle:
        assert json.loads(handle.read()) == {"k": 1}  # BOM dropped too


@requires_pyarrow
def test_parquet_rows_and_row_group_skipping(tmp_path):
    rows = [{"passage_id": f"p{i}", "passage_content": f"text {i}"} for i in range(25)]
    path = write_parquet(tmp_path / "a.parquet", rows, row_group_size=4)
    items, count = drain(iter_parquet(path))
    assert count == 25 and [v for _, _, v, _ in items] == rows
    assert items[3][1] == "row 4"
    for skip in (0, 3, 4, 9, 24, 25, 30):
        items, count = drain(iter_parquet(path, skip=skip))
        assert count == 25 and [i for i, *_ in items] == list(range(skip, 25))
        assert [v for _, _, v, _ in items] == rows[skip:]


@requires_pyarrow
def test_parquet_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(KBFormatError, match="not a readable parquet file"):
        drain(iter_parquet(path))


def test_list_files_sorted_and_filtered(tmp_path):
    for name in ["b.jsonl", "a.parquet", "c.jsonl.gz", "notes.txt"]:
        (tmp_path / name).write_text("x")
    assert [p.name for p in list_files(tmp_path, (".jsonl", ".jsonl.gz", ".parquet"), True)] == \
        ["a.parquet", "b.jsonl", "c.jsonl.gz"]
    with pytest.raises(KBSourceError, match="single file"):
        list_files(tmp_path, (".jsonl",), False)
    with pytest.raises(KBSourceError, match="not found"):
        list_files(tmp_path / "nope", (".jsonl",), True)
    with pytest.raises(KBSourceError, match="no .csv files"):
        list_files(tmp_path, (".csv",), True)


def test_fingerprint_changes_with_content(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
    before = fingerprint([path])
    assert before == fingerprint([path]) and before[0]["size"] == path.stat().st_size
    write_jsonl(path, [{"a": 2}])
    assert fingerprint([path]) != before


def test_missing_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(KBSourceError, match="pip install pyarrow"):
        drain(iter_parquet(path))


def test_sources_that_are_not_files_say_what_they_are_and_are_never_opened(tmp_path):
    import os

    fifo = tmp_path / "kb.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(KBSourceError, match=r"kb\.jsonl is a FIFO \(named pipe\)"):
        list_files(fifo, (".jsonl",), True)
    with pytest.raises(KBSourceError, match=r"/dev/zero is a character device"):
        list_files(Path("/dev/zero"), (".jsonl",), False)
    (tmp_path / "shards").mkdir()
    os.mkfifo(tmp_path / "shards" / "a.jsonl")
    (tmp_path / "shards" / "b.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "shards" / "c.jsonl").mkdir()
    assert [p.name for p in list_files(tmp_path / "shards", (".jsonl",), True)] == ["b.jsonl"]

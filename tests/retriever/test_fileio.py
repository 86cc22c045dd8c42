"""The storage helpers: atomic files and folders, digests, JSONL records."""

import os
from pathlib import Path

import pytest

from retriever.fileio import (
    atomic_write,
    atomic_write_json,
    publish,
    read_jsonl_records,
    replace_folder,
    sha256_hex,
    temp_beside,
)


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
    atomic_write_json(path, {"x": 1})
    assert path.read_text() == '{\n  "x": 1\n}\n'


def test_publish_renames_a_temporary_file_into_place(tmp_path):
    tmp = temp_beside(tmp_path / "b.bin")
    assert tmp.parent == tmp_path and tmp.name.startswith(".b.bin.") and tmp.suffix == ".tmp"
    tmp.write_bytes(b"data")
    assert publish(tmp, tmp_path / "b.bin") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"data" and not tmp.exists()


@pytest.mark.parametrize("durable", [True, False])
def test_replace_folder_swaps_a_complete_folder_in(tmp_path, durable):
    target, staged = tmp_path / "model", tmp_path / ".model.tmp"
    (staged / "sub").mkdir(parents=True)
    (staged / "sub" / "w.bin").write_bytes(b"new")
    replace_folder(staged, target, durable=durable)  # nothing there yet
    assert (target / "sub" / "w.bin").read_bytes() == b"new" and not staged.exists()
    staged.mkdir()
    (staged / "only.txt").write_text("second")
    replace_folder(staged, target, durable=durable)
    assert sorted(p.name for p in target.iterdir()) == ["only.txt"]
    assert sorted(os.listdir(tmp_path)) == ["model"]  # the old folder was removed


def test_replace_folder_keeps_the_old_folder_when_the_new_one_is_missing(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "w.bin").write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "absent", target, durable=False)
    assert (target / "w.bin").read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["model"]


def test_sha256_hex_of_text_is_that_of_its_utf8():
    assert sha256_hex("é") == sha256_hex("é".encode()) != sha256_hex(b"e")
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_read_jsonl_records_names_bad_lines_and_skips_blank_ones(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{oops\n[2]\n')
    rows = list(read_jsonl_records(path))
    assert [(n, v) for n, v, e in rows if e is None] == [(1, {"a": 1}), (4, [2])]
    assert rows[1][0] == 3 and "invalid JSON" in str(rows[1][2])

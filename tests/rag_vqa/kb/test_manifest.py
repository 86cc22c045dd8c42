import json
import os

import pytest

from rag_vqa.kb.errors import KBStoreError
from rag_vqa.kb.manifest import KB_FORMAT_VERSION, KB_KIND, read_manifest, write_json_atomic
from retriever.fileio import seal


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": "é"}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["manifest.json"]


def manifest(**changes):
    files = {"passages.sqlite": {"bytes": 0, "xxh3_128": "0" * 32}}
    return seal({"kind": KB_KIND, "format_version": KB_FORMAT_VERSION, "complete": True,
                 "files": files, **changes})


@pytest.mark.parametrize("content,words", [
    (None, "not a knowledge-base folder"),
    ("{not json", "unreadable manifest"),
    (json.dumps({"kind": "other"}), "not a rag-vqa knowledge-base manifest"),
    (json.dumps(manifest(format_version=KB_FORMAT_VERSION + 1)), "upgrade rag-vqa"),
    (json.dumps(manifest(complete=False)), "unfinished import"),
    (json.dumps(manifest(format_version=1)), "older knowledge bases carry no digests"),
    (json.dumps({**manifest(), "counts": {"passages": 10**6}}), "modified after it was written"),
    (json.dumps({k: v for k, v in manifest().items() if k != "manifest_digest"}),
     "has no manifest_digest"),
    (json.dumps(manifest(files={})), "does not record the size"),
    ("[" * 100000, "unreadable manifest"),
])
def test_read_manifest_errors(tmp_path, content, words):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(KBStoreError, match=words):
        read_manifest(tmp_path)


def test_read_manifest_missing_folder_and_unfinished(tmp_path):
    with pytest.raises(KBStoreError, match="not a folder"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "passages.sqlite").write_bytes(b"")
    with pytest.raises(KBStoreError, match="unfinished import"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(extra=1)))
    assert read_manifest(tmp_path)["extra"] == 1



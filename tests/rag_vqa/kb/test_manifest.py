import json
import os

import pytest

from rag_vqa.kb.errors import KBStoreError
from rag_vqa.kb.manifest import (KB_FORMAT_VERSION, KB_KIND, read_manifest, sha256_file,
                                 write_json_atomic)


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
    return {"kind": KB_KIND, "format_version": KB_FORMAT_VERSION, "complete": True, **changes}


@pytest.mark.parametrize("content,words", [
    (None, "not a knowledge-base folder"),
    ("{not json", "unreadable manifest"),
    (json.dumps({"kind": "other"}), "not a rag-vqa knowledge-base manifest"),
    (json.dumps(manifest(format_version=KB_FORMAT_VERSION + 1)), "upgrade rag-vqa"),
    (json.dumps(manifest(complete=False)), "unfinished import"),
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


def test_sha256_file(tmp_path):
    import hashlib

    path = tmp_path / "x.bin"
    data = os.urandom(3 * 1024 + 7)
    path.write_bytes(data)
    assert sha256_file(path, block=1024) == hashlib.sha256(data).hexdigest()

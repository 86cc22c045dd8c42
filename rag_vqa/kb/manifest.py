"""The self-description of a knowledge-base folder: ``manifest.json`` next to ``passages.sqlite``.

The manifest is written atomically (temporary file + rename) and only once the import is done, so
a folder whose manifest is missing or says ``"complete": false`` is an unfinished import and is
never opened as a knowledge base by mistake.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import KBStoreError

__all__ = ["KB_KIND", "KB_FORMAT_VERSION", "MANIFEST_NAME", "SQLITE_NAME", "write_json_atomic",
           "read_manifest", "sha256_file"]

KB_KIND = "rag-vqa-knowledge-base"
KB_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SQLITE_NAME = "passages.sqlite"


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON so that readers see either the old file or the complete new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_manifest(folder: str | Path, *, require_complete: bool = True) -> dict[str, Any]:
    """The manifest of a KB folder, checked: right kind, a format version we can read, complete."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise KBStoreError(f"knowledge base not found: {folder} is not a folder")
    if not path.is_file():
        if (folder / SQLITE_NAME).exists():
            raise KBStoreError(f"{folder} is an unfinished import (no {MANIFEST_NAME}); run the "
                               "same 'rag-vqa kb import' again to resume it")
        raise KBStoreError(f"{folder} is not a knowledge-base folder (no {MANIFEST_NAME}); create "
                           "one with 'rag-vqa kb import'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KBStoreError(f"unreadable manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != KB_KIND:
        raise KBStoreError(f"{path} is not a rag-vqa knowledge-base manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > KB_FORMAT_VERSION:
        raise KBStoreError(f"{folder} has KB format version {version!r}; this rag-vqa reads up to "
                           f"version {KB_FORMAT_VERSION} (upgrade rag-vqa or re-import)")
    if require_complete and manifest.get("complete") is not True:
        raise KBStoreError(f"{folder} is an unfinished import; run the same 'rag-vqa kb import' "
                           "again to resume it")
    return manifest


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()

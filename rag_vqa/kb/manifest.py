"""The self-description of a knowledge-base folder: ``manifest.json`` next to ``passages.sqlite``.

The manifest is written atomically (temporary file + rename) and only once the import is done, so
a folder whose manifest is missing or says ``"complete": false`` is an unfinished import and is
never opened as a knowledge base by mistake. A complete manifest records the size and xxh3 digest
of ``passages.sqlite`` and is sealed with the digest of itself: an edited manifest or a rewritten
passage is refused when the knowledge base is opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retriever.fileio import DIGEST, CorruptFileError, atomic_write_json, check_seal, seal

from .errors import KBStoreError

__all__ = ["KB_KIND", "KB_FORMAT_VERSION", "MANIFEST_NAME", "SQLITE_NAME", "write_json_atomic",
           "write_sealed_manifest", "read_manifest", "sqlite_entry"]

KB_KIND = "rag-vqa-knowledge-base"
KB_FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
SQLITE_NAME = "passages.sqlite"

write_json_atomic = atomic_write_json


def write_sealed_manifest(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Seal and publish a complete manifest; returns what was written."""
    sealed = seal(manifest)
    atomic_write_json(Path(folder) / MANIFEST_NAME, sealed)
    return sealed


def sqlite_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The recorded size and digest of ``passages.sqlite``."""
    entry = (manifest.get("files") or {}).get(SQLITE_NAME)
    if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or \
            not isinstance(entry.get(DIGEST), str):
        raise KBStoreError(f"the manifest does not record the size and {DIGEST} digest of "
                           f"{SQLITE_NAME}; re-import the knowledge base")
    return entry


def read_manifest(folder: str | Path, *, require_complete: bool = True) -> dict[str, Any]:
    """The manifest of a KB folder, checked: right kind, a format version we can read, complete
    and sealed."""
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise KBStoreError(f"unreadable manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != KB_KIND:
        raise KBStoreError(f"{path} is not a rag-vqa knowledge-base manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version != KB_FORMAT_VERSION:
        older = isinstance(version, int) and version < KB_FORMAT_VERSION
        raise KBStoreError(
            f"{folder} has KB format version {version!r}; this rag-vqa reads version "
            f"{KB_FORMAT_VERSION}" + (" (older knowledge bases carry no digests); re-import it "
                                      "with 'rag-vqa kb import ... --no-resume'" if older else
                                      " (upgrade rag-vqa or re-import)"))
    if require_complete and manifest.get("complete") is not True:
        raise KBStoreError(f"{folder} is an unfinished import; run the same 'rag-vqa kb import' "
                           "again to resume it")
    if manifest.get("complete") is True:
        try:
            check_seal(manifest, path)
        except CorruptFileError as exc:
            raise KBStoreError(f"knowledge base {folder} is damaged: {exc}. Re-import it.") \
                from exc
        sqlite_entry(manifest)
    return manifest

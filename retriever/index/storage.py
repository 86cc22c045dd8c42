"""On-disk layout of a multi-vector index: a folder with ``manifest.json`` (format version, method,
parameters, counts, the size and sha256 of every file) and arrays as ``.npy`` files that load
memory-mapped. Nothing is pickled. The manifest is written last, atomically: it is the commit
point, so a half-written build or save is never mistaken for an index.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT", "FORMAT_VERSION", "IndexFormatError", "sha256_file", "write_npy", "NpyWriter",
    "read_manifest", "write_manifest", "verify_files", "IdStore",
]

FORMAT = "rag-vqa/multivector-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class IndexFormatError(ValueError):
    """A folder that is not a readable index: missing, wrong version, or damaged files."""


def sha256_file(path: str | os.PathLike, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


class NpyWriter:
    """A .npy file filled in place (memory-mapped), published under its final name on close."""

    def __init__(self, folder: Path, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.final = folder / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        self.tmp = Path(tmp)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def close(self) -> dict[str, Any]:
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.final)
        return _entry(self.final)

    def abort(self) -> None:
        self.__dict__.pop("array", None)
        self.tmp.unlink(missing_ok=True)


def write_npy(folder: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write one array atomically; returns its manifest entry (bytes, sha256)."""
    writer = NpyWriter(folder, name, array.shape, array.dtype)
    try:
        writer.array[...] = array
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{folder} is not an index: no {MANIFEST} (an interrupted build "
                               "leaves none; build it again)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexFormatError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not a {FORMAT} manifest (format="
                               f"{manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(f"{folder} uses index format version {version}; this rag-vqa "
                               f"reads version {FORMAT_VERSION}. Rebuild the index (rag-vqa index "
                               "build) or use a matching rag-vqa version.")
    return manifest


def verify_files(folder: Path, files: dict[str, dict[str, Any]], level: str = "full") -> None:
    """Check every file the manifest lists: presence and size, and the sha256 when ``full``."""
    if level not in ("full", "size", "none"):
        raise ValueError(f"verify must be 'full', 'size' or 'none', got {level!r}")
    if level == "none":
        return
    problems = []
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {entry['bytes']}")
        elif level == "full" and sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: checksum mismatch (file changed or corrupt)")
    if problems:
        raise IndexFormatError(f"index {folder} is damaged:\n  - " + "\n  - ".join(problems)
                               + "\nRebuild it, or restore the listed files.")


class IdStore:
    """Document ids by row, either all integers or all strings (UTF-8 blob + offsets, compact and
    memory-mappable). The id -> row map is built only when needed (add/remove)."""

    def __init__(self, kind: str) -> None:
        if kind not in ("int", "str"):
            raise ValueError(f"id kind must be 'int' or 'str', got {kind!r}")
        self.kind = kind
        self._segments: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._bases: list[int] = [0]
        self._lookup: dict[Any, int] | None = None

    @staticmethod
    def kind_of(ids: Sequence[Any]) -> str:
        if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
            return "int"
        if all(isinstance(i, str) for i in ids):
            return "str"
        raise TypeError("document ids must be all integers or all strings")

    def __len__(self) -> int:
        return self._bases[-1]

    def encode(self, ids: Sequence[Any]) -> dict[str, np.ndarray]:
        """Arrays that store ``ids`` (for one new segment)."""
        if len(ids) and self.kind_of(ids) != self.kind:
            raise TypeError(f"this index stores {self.kind} document ids")
        if self.kind == "int":
            return {"ids": np.asarray(ids, dtype=np.int64)}
        blobs = [i.encode("utf-8") for i in ids]
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        return {"ids_utf8": np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(),
                "ids_offsets": offsets}

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        if self.kind == "int":
            seg = (arrays["ids"], None)
            count = len(arrays["ids"])
        else:
            seg = (arrays["ids_utf8"], arrays["ids_offsets"])
            count = len(arrays["ids_offsets"]) - 1
        if self._lookup is not None:
            base = len(self)
            for j in range(count):
                self._lookup[self._decode(seg, j)] = base + j
        self._segments.append(seg)
        self._bases.append(self._bases[-1] + count)

    def _decode(self, seg: tuple[np.ndarray, np.ndarray | None], j: int) -> Any:
        data, offsets = seg
        if offsets is None:
            return int(data[j])
        return bytes(data[int(offsets[j]):int(offsets[j + 1])]).decode("utf-8")

    def id_at(self, row: int) -> Any:
        s = int(np.searchsorted(self._bases, row, side="right")) - 1
        return self._decode(self._segments[s], row - self._bases[s])

    def lookup(self) -> dict[Any, int]:
        """id -> latest row (built once, then kept up to date)."""
        if self._lookup is None:
            self._lookup = {}
            for s, seg in enumerate(self._segments):
                for j in range(self._bases[s + 1] - self._bases[s]):
                    self._lookup[self._decode(seg, j)] = self._bases[s] + j
        return self._lookup

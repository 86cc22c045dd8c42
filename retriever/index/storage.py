"""On-disk layout of a multi-vector index.

    INDEX/manifest.json          format version, method, parameters, counts, the size and xxh3
                                 digest of every data file; sealed with the digest of itself
    INDEX/data-<id>/*.npy        the arrays (memory-mapped at load); nothing is pickled

A sharded index (``kind`` "sharded", see sharded.py) is a folder whose manifest embeds the
sealed manifests of its parts, each a normal index folder under ``INDEX/parts-<id>/``.

The manifest is written last, atomically: it is the commit point. A build that replaces an index
writes a new ``data-<id>`` folder beside the old one and swaps the manifest, so the old index
stays complete and searchable until the new one is, and a killed build leaves it untouched.
Every file, the manifest included, is covered by a digest: a flipped bit or a rewritten file
anywhere is refused at load with an error naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import UserError, UserInputError, UserTypeError
from ..fileio import (
    DIGEST,
    CorruptFileError,
    atomic_write_json,
    check_seal,
    file_digest,
    publish,
    seal,
    temp_beside,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KIND_SHARDED",
    "KIND_SINGLE",
    "MANIFEST",
    "VERIFY_LEVELS",
    "IdStore",
    "IndexFormatError",
    "NpyWriter",
    "check_data_name",
    "check_doc_ids",
    "check_embeddings",
    "check_manifest",
    "check_part_path",
    "file_entry",
    "load_npy",
    "populate",
    "read_manifest",
    "verify_files",
    "write_manifest",
    "write_npy",
]

logger = logging.getLogger(__name__)

FORMAT = "rag-vqa/multivector-index"
FORMAT_VERSION = 3  # 3: exact indexes record max_norm, plaid their centroids_digest; sharding
MANIFEST = "manifest.json"
KIND_SINGLE, KIND_SHARDED = "single", "sharded"
VERIFY_LEVELS = ("full", "size", "none")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# key -> type of every manifest field code reads; a manifest lacking one is refused by name
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "method": str, "data": str, "dims": dict, "id_kind": str, "params": dict, "counts": dict,
    "segments": list, "files": dict, "metadata": dict, "created": str, "updated": str,
}
_NESTED = {"dims": ("tokens", "dim"), "counts": ("rows", "live", "trained_rows")}
_SHARDED_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "method": str, "data": str, "dims": dict, "id_kind": str, "params": dict, "counts": dict,
    "parts": list, "metadata": dict, "created": str, "updated": str,
}


class IndexFormatError(UserError, ValueError):
    """A folder that is not a readable index: missing, wrong version, or damaged files."""


def check_data_name(name: Any, what: str) -> str:
    """A manifest names files and its data folder: plain names only, never a path."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or ".." in name:
        raise IndexFormatError(f"{what} {name!r} is not a plain file name")
    return name


def file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, DIGEST: file_digest(path)}


class NpyWriter:
    """A .npy file filled in place (memory-mapped), published under its final name on close."""

    def __init__(self, folder: Path, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.final = folder / name
        self.tmp = temp_beside(self.final)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def close(self) -> dict[str, Any]:
        self.array.flush()
        del self.array
        publish(self.tmp, self.final)
        return file_entry(self.final)

    def abort(self) -> None:
        self.__dict__.pop("array", None)
        self.tmp.unlink(missing_ok=True)


def write_npy(folder: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write one array atomically; returns its manifest entry (bytes, digest)."""
    writer = NpyWriter(folder, name, array.shape, array.dtype)
    try:
        writer.array[...] = array
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def load_npy(path: Path, mmap: bool = True) -> np.ndarray:
    """An array of the index (memory-mapped), or IndexFormatError naming the file."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise IndexFormatError(f"{path} is not a readable array (corrupt or truncated): "
                               f"{exc}") from exc


_MADV_POPULATE_READ = 22  # Linux 5.14+: fault a mapping's pages in now (not in Python's mmap)


def populate(arrays: Sequence[np.ndarray], share: float = 0.25) -> bool:
    """Map every page of the memory-mapped ``arrays`` (maps, or views of maps) into the
    process now, when together they are at most ``share`` of the machine's memory: a search
    then does not pay a page fault for each row it touches first (at 1M documents, 2038
    residual rows cost 2.4 ms faulted, 0.7 mapped), and pages already in the page cache cost no
    reading. False where it did nothing (another OS, an older kernel, arrays too large
    together: those fault pages in as they are read)."""
    maps = [_mmap_of(array) for array in arrays if array.nbytes]
    if sys.platform != "linux" or not maps or any(m is None for m in maps):
        return False
    total = sum(array.nbytes for array in arrays)
    if total > share * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"):
        return False
    try:
        for mapped in maps:
            mapped.madvise(_MADV_POPULATE_READ)
    except OSError:  # EINVAL before Linux 5.14
        return False
    return True


def _mmap_of(array: np.ndarray) -> Any:
    """The mmap behind a memory-mapped array or a view of one, else None."""
    while array is not None:
        mapped = getattr(array, "_mmap", None)
        if mapped is not None:
            return mapped
        array = getattr(array, "base", None)
    return None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Seal and publish the manifest: the commit point of every build and save."""
    atomic_write_json(folder / MANIFEST, seal(manifest), sort_keys=True)


def _check_fields(manifest: dict[str, Any], path: Any,
                  schema: dict[str, type | tuple[type, ...]]) -> None:
    for key, kind in schema.items():
        if not isinstance(manifest.get(key), kind):
            problem = "is missing" if key not in manifest else \
                f"should be a {kind.__name__}, not {type(manifest[key]).__name__}"
            raise IndexFormatError(f"{path}: field {key!r} {problem}")
    for key, inner in _NESTED.items():
        for name in inner:
            value = manifest[key].get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise IndexFormatError(f"{path}: field {key}.{name} should be a count, got "
                                       f"{value!r}")
    check_data_name(manifest["data"], f"{path}: data folder")


def _check_schema(manifest: dict[str, Any], path: Any) -> None:
    if manifest.get("kind", KIND_SINGLE) == KIND_SHARDED:
        _check_fields(manifest, path, _SHARDED_SCHEMA)
        for i, part in enumerate(manifest["parts"]):
            if not isinstance(part, dict) or not isinstance(part.get("manifest"), dict):
                raise IndexFormatError(f"{path}: part {i} has no manifest")
            check_part_path(part.get("path"), f"{path}: part {i}")
        return
    if manifest.get("kind", KIND_SINGLE) != KIND_SINGLE:
        raise IndexFormatError(f"{path}: unknown index kind {manifest.get('kind')!r}")
    _check_fields(manifest, path, _SCHEMA)
    for name, entry in manifest["files"].items():
        check_data_name(name, f"{path}: file")
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or \
                not isinstance(entry.get(DIGEST), str):
            raise IndexFormatError(f"{path}: the entry of {name} lacks its size or {DIGEST}")
    for i, seg in enumerate(manifest["segments"]):
        if not isinstance(seg, dict) or not isinstance(seg.get("rows"), int):
            raise IndexFormatError(f"{path}: segment {i} has no row count")


def check_part_path(path: Any, what: str) -> str:
    """A part of a sharded index lives inside it: a relative path of plain names."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        raise IndexFormatError(f"{what}: path {path!r} is not relative to the index")
    for piece in path.split("/"):
        check_data_name(piece, f"{what}: path component")
    return path


def check_manifest(manifest: Any, path: Any, folder: Any = None) -> dict[str, Any]:
    """A manifest read from ``path`` (or embedded in a sharded one): ours, a version we read,
    sealed, complete. ``folder`` names the index in the rebuild advice."""
    folder = path if folder is None else folder
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise IndexFormatError(f"{path} is not a {FORMAT} manifest (format={found!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        raise IndexFormatError(
            f"{folder} uses index format version {version!r}; this rag-vqa reads version "
            f"{FORMAT_VERSION}" + (" (older indexes lack what this version checks and "
                                   "searches with)" if older else "") + ". Rebuild it: "
            f"rag-vqa index build KB --retriever ID --out {folder} --overwrite")
    try:
        check_seal(manifest, path)
    except CorruptFileError as exc:
        raise IndexFormatError(f"index {folder} is damaged: {exc}. Rebuild it, or restore "
                               f"{MANIFEST}.") from exc
    _check_schema(manifest, path)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an index folder, checked: ours, a version we read, sealed, complete."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{folder} is not an index: no {MANIFEST} (an interrupted build "
                               "leaves none; build it again)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IndexFormatError(f"{path} is not valid JSON (corrupt?): {exc}") from exc
    return check_manifest(manifest, path, folder)


def verify_files(folder: Path, files: dict[str, dict[str, Any]], level: str = "full",
                 show_progress: bool | None = None) -> None:
    """Check every file the manifest lists: presence and size, and the digest when ``full``."""
    if level not in VERIFY_LEVELS:
        raise UserInputError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, got {level!r}")
    if level == "none":
        return
    problems = []
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {entry['bytes']}")
    if not problems and level == "full":
        total = sum(entry["bytes"] for entry in files.values())
        show = total > (1 << 30) if show_progress is None else show_progress
        with tqdm(total=total, unit="B", unit_scale=True, desc="verifying index",
                  disable=not show) as bar:
            for name, entry in sorted(files.items()):
                if file_digest(folder / name, bar.update) != entry[DIGEST]:
                    problems.append(f"{folder / name}: content differs from its recorded digest "
                                    "(the file changed or is corrupt)")
    if problems:
        raise IndexFormatError(f"index {folder.parent} is damaged:\n  - " +
                               "\n  - ".join(problems) + "\nRebuild it, or restore the listed "
                                                         "files.")


class IdStore:
    """Document ids by row, either all integers or all strings (UTF-8 blob + offsets, compact and
    memory-mappable). The id -> row map is built only when needed (add/remove)."""

    def __init__(self, kind: str) -> None:
        if kind not in ("int", "str"):
            raise UserInputError(f"id kind must be 'int' or 'str', got {kind!r}")
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
        raise UserTypeError("document ids must be all integers or all strings")

    def __len__(self) -> int:
        return self._bases[-1]

    def encode(self, ids: Sequence[Any]) -> dict[str, np.ndarray]:
        """Arrays that store ``ids`` (for one new segment)."""
        if len(ids) and self.kind_of(ids) != self.kind:
            raise UserTypeError(f"this index stores {self.kind} document ids")
        if self.kind == "int":
            return {"ids": np.asarray(ids, dtype=np.int64)}
        blobs = [i.encode("utf-8") for i in ids]
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        return {"ids_utf8": np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(),
                "ids_offsets": offsets}

    @staticmethod
    def check(arrays: dict[str, np.ndarray], rows: int, where: str) -> None:
        """Structural check of one segment's id arrays (cheap; catches what sizes cannot)."""
        if "ids" in arrays:
            if arrays["ids"].shape != (rows,):
                raise IndexFormatError(f"{where}: {arrays['ids'].shape[0]} ids for {rows} rows")
            return
        offsets, blob = arrays["ids_offsets"], arrays["ids_utf8"]
        if offsets.shape != (rows + 1,) or offsets.dtype != np.int64:
            raise IndexFormatError(f"{where}: id offsets of shape {offsets.shape} for {rows} rows")
        if rows and (offsets[0] != 0 or offsets[-1] != len(blob) or
                     bool(np.any(np.diff(offsets) < 0))):
            raise IndexFormatError(f"{where}: id offsets are not increasing within the id data")

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
        try:
            return bytes(data[int(offsets[j]):int(offsets[j + 1])]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IndexFormatError(f"a document id of this index is not valid UTF-8 (corrupt "
                                   f"id data): {exc}") from exc

    def int_ids(self) -> np.ndarray:
        """Every id by row (an index of int ids)."""
        if self.kind != "int":
            raise UserTypeError("this index stores str ids")
        return np.concatenate([seg for seg, _ in self._segments] or [np.empty(0, np.int64)])

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


def check_doc_ids(doc_ids: Sequence[Any]) -> list[Any]:
    """``doc_ids`` as plain Python values, checked: one kind (all int or all str), unique."""
    ids = [int(i) if isinstance(i, np.integer) else i for i in doc_ids]
    IdStore.kind_of(ids)
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise UserInputError(f"duplicate document ids: {dup[:10]}")
    return ids


def check_embeddings(embeddings: Any, count: int | None = None) -> tuple[int, int, int]:
    """(N, tokens, dim) of an array-like of embeddings, checked (and N against ``count``)."""
    shape = getattr(embeddings, "shape", None)
    if shape is None or len(shape) != 3:
        raise UserInputError(f"embeddings must be an array-like of shape (N, tokens, dim), got "
                         f"{shape if shape is not None else type(embeddings).__name__}")
    if count is not None and shape[0] != count:
        raise UserInputError(f"got {count} document ids but {shape[0]} embeddings")
    return int(shape[0]), int(shape[1]), int(shape[2])

"""Sharded indexes: several parts, each a normal index folder, searched as one.

    INDEX/manifest.json                 kind "sharded": method, dims, counts, metadata, and for
                                        every part its relative path and its sealed manifest
    INDEX/parts-<id>/part-00000/        a normal index folder (manifest.json + data-<id>/)

The parts' manifests are embedded in the sharded manifest, which is the one commit point: a
save that touches several parts (a removal here, an addition there) writes their new files,
then the sharded manifest, so a reader sees all of it or none of it. Each part also keeps its
own manifest.json (refreshed after the commit) and stays loadable on its own.

Parts are built independently (one per Ray worker, per machine or per slice of a knowledge
base), from the same trained centroids (``MultiVectorIndex.build(..., centroids=OTHER)``), and
joined by :func:`merge_indexes` (``rag-vqa index merge``), which hard-links their files into
the new index (files of an index are never rewritten in place, so later changes to a source
cannot reach it; copied where links are impossible). Search runs every part and merges the
per-part top-k by score: scores are exact MaxSim in every part, so the merge is exact.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from ..errors import UserInputError
from ..fileio import seal
from .folders import clear_stale_data, new_data_name, now
from .multivector import AddReport, Hit, MultiVectorIndex
from .params import check_search_params
from .storage import (
    FORMAT,
    FORMAT_VERSION,
    KIND_SHARDED,
    KIND_SINGLE,
    MANIFEST,
    IndexFormatError,
    check_manifest,
    read_manifest,
    write_manifest,
)

__all__ = ["ShardedIndex", "check_compatible", "merge_indexes"]

logger = logging.getLogger(__name__)


def _retriever_key(manifest: dict[str, Any]) -> tuple:
    retriever = manifest.get("metadata", {}).get("retriever") or {}
    return retriever.get("config_sha256"), retriever.get("weights_xxh3")


def check_compatible(manifests: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Parts can be searched as one only with the same method, vector shape, id kind,
    retriever and (plaid) the same trained centroids and quantiser."""
    first, where = manifests[0], names[0]
    for manifest, name in zip(manifests[1:], names[1:]):
        for label, get in (("method", lambda m: m["method"]), ("vector shape", lambda m: m["dims"]),
                           ("id kind", lambda m: m["id_kind"]),
                           ("retriever (config, weights)", _retriever_key),
                           ("centroids", lambda m: m["params"].get("centroids_digest")),
                           ("nbits", lambda m: m["params"].get("nbits"))):
            if get(manifest) != get(first):
                hint = (" (build the parts with --centroids FROM_ONE_INDEX)"
                        if label == "centroids" else "")
                raise UserInputError(f"{name} and {where} cannot be searched as one: different "
                                 f"{label}: {get(manifest)!r} vs {get(first)!r}{hint}")


def _id_hashes(index: MultiVectorIndex) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hashes, rows) of the live ids of ``index`` (an int id is its own hash)."""
    live = np.flatnonzero(~index.deleted)
    if index.ids.kind == "int":
        return index.ids.int_ids()[live].astype(np.int64).view(np.uint64), live
    hashes = np.fromiter((xxhash.xxh3_64_intdigest(index.ids.id_at(row).encode("utf-8"))
                          for row in live.tolist()), dtype=np.uint64, count=len(live))
    return hashes, live


def _check_unique_ids(parts: Sequence[MultiVectorIndex], names: Sequence[str]) -> None:
    """No live id in two parts (sorting 8-byte hashes, then comparing the ids behind equal
    hashes: cheap for tens of millions of ids)."""
    found = [_id_hashes(p) for p in parts]
    hashes = np.concatenate([h for h, _ in found])
    rows = np.concatenate([r for _, r in found])
    owner = np.repeat(np.arange(len(parts)), [len(h) for h, _ in found])
    order = np.argsort(hashes, kind="stable")
    for j in np.flatnonzero(hashes[order][1:] == hashes[order][:-1]).tolist():
        a, b = order[j], order[j + 1]
        if owner[a] == owner[b]:
            continue
        id_a = parts[owner[a]].ids.id_at(int(rows[a]))
        if id_a == parts[owner[b]].ids.id_at(int(rows[b])):
            raise UserInputError(f"document id {id_a!r} is in both {names[owner[a]]} and "
                             f"{names[owner[b]]}: ids must be unique across the parts of an "
                             "index")


class ShardedIndex(MultiVectorIndex):
    """Parts searched, changed and saved as one index."""

    def __init__(self, path: Path, manifest: dict[str, Any], parts: list[MultiVectorIndex]
                 ) -> None:
        self.path = path
        self.manifest = manifest
        self.parts = parts
        self._dirty = False

    @property
    def num_rows(self) -> int:
        return sum(p.num_rows for p in self.parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __repr__(self) -> str:
        return (f"ShardedIndex({str(self.path)!r}, method={self.method!r}, parts="
                f"{len(self.parts)}, documents={len(self)})")

    @property
    def data_path(self) -> Path:
        return self.path / self.manifest["data"]

    @classmethod
    def open(cls, folder: Path, manifest: dict[str, Any], verify: str = "full",
             show_progress: bool | None = None) -> ShardedIndex:
        parts, names = [], []
        for i, entry in enumerate(manifest["parts"]):
            where = folder / entry["path"]
            names.append(str(where))
            part = check_manifest(entry["manifest"], f"{where} (part {i} of {folder})", where)
            if part.get("kind", KIND_SINGLE) != KIND_SINGLE:
                raise IndexFormatError(f"{where}: a part of a sharded index must be a single "
                                       "index")
            parts.append(MultiVectorIndex.open(where, part, verify, show_progress))
        if not parts:
            raise IndexFormatError(f"{folder}: a sharded index without parts")
        check_compatible([p.manifest for p in parts], names)
        rows = sum(p.num_rows for p in parts)
        if rows != manifest["counts"]["rows"]:
            raise IndexFormatError(f"{folder}: the parts hold {rows} rows, the manifest says "
                                   f"{manifest['counts']['rows']}")
        return cls(folder, manifest, parts)

    # -- search -------------------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, **params: Any) -> list[list[Hit]]:
        """Every part's top ``k``, merged by score (exact MaxSim everywhere: an exact merge)."""
        params = check_search_params(params)
        q = self._queries(queries)
        if k < 1:
            raise UserInputError(f"k must be >= 1, got {k}")
        per_part = [part.search_rows(q, k, **params) for part in self.parts]
        out = []
        for qi in range(q.shape[0]):
            scores = np.concatenate([res[qi][1] for res in per_part])
            which = np.concatenate([np.full(len(res[qi][0]), p) for p, res in
                                    enumerate(per_part)]).astype(np.int64)
            rows = np.concatenate([res[qi][0] for res in per_part]).astype(np.int64)
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([Hit(self.parts[int(which[j])].ids.id_at(int(rows[j])), float(scores[j]))
                        for j in top])
        return out

    def search_rows(self, queries: torch.Tensor, k: int, **params: Any
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raise TypeError("a sharded index has no global rows: use search()")

    # -- changes --------------------------------------------------------------------------------
    def _owner(self, doc_id: Any) -> int | None:
        for p, part in enumerate(self.parts):
            row = part.ids.lookup().get(doc_id)
            if row is not None and not part.deleted[row]:
                return p
        return None

    def add(self, doc_ids: Sequence[Any], embeddings: Any,
            show_progress: bool | None = None) -> AddReport:
        """New documents go to the last part (ids must be new to every part)."""
        live = [i for i in doc_ids if self._owner(int(i) if isinstance(i, np.integer) else i)
                is not None]
        if live:
            raise UserInputError(f"document ids already in the index: {live[:10]} (remove them "
                             "first to replace them)")
        report = self.parts[-1].add(doc_ids, embeddings, show_progress)
        self._dirty = self._dirty or report.added > 0
        return AddReport(report.added, self.num_rows, len(self), report.rebuild_advised)

    def remove(self, doc_ids: Sequence[Any]) -> int:
        """Tombstone documents in the parts holding them (all or nothing)."""
        by_part: dict[int, list[Any]] = {}
        missing = []
        for i in doc_ids:
            i = int(i) if isinstance(i, np.integer) else i
            owner = self._owner(i)
            if owner is None:
                missing.append(i)
            else:
                by_part.setdefault(owner, []).append(i)
        if missing:
            raise KeyError(f"not in the index: {missing[:10]}"
                           + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        for p, ids in by_part.items():
            self.parts[p].remove(ids)
        self._dirty = self._dirty or bool(by_part)
        return sum(len(ids) for ids in by_part.values())

    def save(self) -> None:
        """Commit the changes of every part at once: their new files, then this manifest."""
        if not self._dirty:
            return
        dirty = [p for p in self.parts if p.dirty]
        obsolete = {id(p): p.stage_save() for p in dirty}
        manifest = self.manifest
        for entry, part in zip(manifest["parts"], self.parts):
            entry["manifest"] = seal(part.manifest)
        manifest["counts"].update({"rows": self.num_rows, "live": len(self)})
        manifest["updated"] = now()
        write_manifest(self.path, manifest)       # the commit
        for part in dirty:
            write_manifest(part.path, part.manifest)  # each part loadable on its own again
            part.finish_save(obsolete[id(part)])
        self._dirty = False

    @property
    def dirty(self) -> bool:
        return self._dirty

    def resident_bytes(self) -> dict[str, int]:
        total = sum(p.resident_bytes()["total"] for p in self.parts)
        return {"total": total, "per_document": total // max(len(self), 1)}


def _place(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copy2(src, dst)


def _sources(paths: Sequence[str | os.PathLike], verify: str
             ) -> tuple[list[MultiVectorIndex], list[str]]:
    parts, names = [], []
    for path in paths:
        index = MultiVectorIndex.load(path, verify=verify)
        if isinstance(index, ShardedIndex):
            parts += index.parts
            names += [str(p.path) for p in index.parts]
        else:
            parts.append(index)
            names.append(str(path))
    return parts, names


def merge_indexes(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                  overwrite: bool = False, link: bool = True, verify: str = "full"
                  ) -> ShardedIndex:
    """One sharded index at ``out`` made of the parts ``sources`` (single or sharded indexes,
    each checked at level ``verify``): compatible, with ids unique across them. Their files are
    hard-linked (``link``) or copied; ``out`` is replaced atomically (its manifest last)."""
    if not sources:
        raise UserInputError("merge needs at least one index")
    folder = Path(out)
    resolved = {Path(s).resolve() for s in sources}
    if folder.resolve() in resolved:
        raise UserInputError(f"{folder} is one of the indexes to merge: write the merge elsewhere")
    parts, names = _sources(sources, verify)
    check_compatible([p.manifest for p in parts], names)
    _check_unique_ids(parts, names)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already holds an index; pass overwrite=True "
                                  "(--overwrite) to replace it")
        try:
            keep = read_manifest(folder)["data"]
        except IndexFormatError:
            keep = None
    else:
        keep = None
    clear_stale_data(folder, keep=keep)
    parts_name = new_data_name("parts")
    entries = []
    try:
        for i, part in enumerate(parts):
            rel = f"{parts_name}/part-{i:05d}"
            dest = folder / rel
            data = dest / part.manifest["data"]
            data.mkdir(parents=True)
            for name in part.manifest["files"]:
                _place(part.data_path / name, data / name, link)
            part_manifest = copy.deepcopy(part.manifest)
            write_manifest(dest, part_manifest)
            entries.append({"path": rel, "manifest": seal(part_manifest),
                            "merged_from": names[i]})
    except BaseException:
        shutil.rmtree(folder / parts_name, ignore_errors=True)
        raise
    first = parts[0].manifest
    common = {key: value for key, value in first["params"].items()
              if all(p.manifest["params"].get(key) == value for p in parts)}
    kbs = [p.manifest["metadata"].get("kb") for p in parts]
    metadata = {"retriever": first["metadata"].get("retriever"),
                "kb": kbs[0] if all(kb == kbs[0] for kb in kbs) else None}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND_SHARDED,
        "method": first["method"], "created": now(), "updated": now(), "library": "rag-vqa",
        "data": parts_name, "dims": first["dims"], "id_kind": first["id_kind"],
        "params": common, "parts": entries, "metadata": metadata,
        "counts": {"rows": sum(p.num_rows for p in parts), "live": sum(len(p) for p in parts),
                   "trained_rows": max(p.manifest["counts"]["trained_rows"] for p in parts)},
    }
    write_manifest(folder, manifest)  # the swap
    clear_stale_data(folder, keep=parts_name)
    logger.info("merged %d parts (%d documents) into %s", len(parts), manifest["counts"]["live"],
                folder)
    return MultiVectorIndex.load(folder, verify="size")  # type: ignore[return-value]


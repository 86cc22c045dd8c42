"""``MultiVectorIndex``: build / load / search / add / remove / save over late-interaction
embeddings (every document is a (32, 128) matrix; scores are MaxSim).

Methods: ``exact`` (brute force, the ground truth) and ``plaid`` (compressed, fast; see
plaid.py). An index is a folder (see storage.py); ``add`` and ``remove`` change the index in
memory and ``save`` commits them, the manifest being the commit point. ``load`` also opens a
sharded index (several parts searched as one, see sharded.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserInputError
from ..fileio import SEAL_KEY, seal
from .engine import IndexEngine
from .exact import ExactEngine
from .folders import clear_stale_data, legacy_files, new_data_name, now
from .manifest import IndexManifest
from .params import check_build_params, check_search_params
from .plaid import PlaidEngine
from .segments import segment_file
from .storage import (
    FORMAT,
    FORMAT_VERSION,
    KIND_SHARDED,
    KIND_SINGLE,
    MANIFEST,
    IdStore,
    IndexFormatError,
    check_data_name,
    check_doc_ids,
    check_embeddings,
    load_npy,
    read_manifest,
    verify_files,
    write_manifest,
    write_npy,
)

__all__ = ["AddReport", "Hit", "IndexFormatError", "MultiVectorIndex"]

logger = logging.getLogger(__name__)

ENGINES: dict[str, type[IndexEngine]] = {engine.method: engine for engine in (ExactEngine,
                                                                             PlaidEngine)}


@dataclass(frozen=True)
class Hit:
    doc_id: Any
    score: float


@dataclass(frozen=True)
class AddReport:
    added: int
    rows: int
    live: int
    rebuild_advised: str | None


def _ids_files(folder: Path, seg: int, arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    return {segment_file(name, seg): write_npy(folder, segment_file(name, seg), array)
            for name, array in arrays.items()}


def _progress(total: int, desc: str, show: bool | None):
    bar = tqdm(total=total, desc=desc, unit="doc", disable=not (total > 10000 if show is None
                                                                 else show))
    return bar, bar.update


class MultiVectorIndex:
    """A searchable set of (doc_id, (tokens, dim) matrix) pairs."""

    def __init__(self, path: Path, manifest: dict[str, Any], engine: Any, ids: IdStore,
                 deleted: np.ndarray) -> None:
        self.path = path
        self.manifest = manifest
        self.engine = engine
        self.ids = ids
        self.deleted = deleted
        self._dirty = False

    # -- properties ---------------------------------------------------------------------------
    @property
    def info(self) -> IndexManifest:
        """The manifest, typed: what was built, from which retriever and KB, with what."""
        return IndexManifest(self.manifest)

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def num_rows(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return self.num_rows - int(self.deleted.sum())

    def __repr__(self) -> str:
        return (f"MultiVectorIndex({str(self.path)!r}, method={self.method!r}, "
                f"documents={len(self)})")

    @property
    def digest(self) -> str:
        """Digest of the manifest, which itself records the digest of every file: two indexes
        with the same digest hold the same documents and vectors."""
        return seal(self.manifest)[SEAL_KEY]

    # -- build / load -------------------------------------------------------------------------
    @classmethod
    def build(cls, path: str | os.PathLike, doc_ids: Sequence[Any], embeddings: Any,
              method: str = "plaid", nbits: int | None = None, *, overwrite: bool = False,
              metadata: dict[str, Any] | None = None, show_progress: bool | None = None,
              centroids: str | os.PathLike | None = None, **params: Any) -> MultiVectorIndex:
        """Index ``embeddings`` (N, tokens, dim), any array-like that slices (a memory-mapped
        .npy is read a chunk at a time), under ``doc_ids`` (all int or all str, unique).

        ``centroids``: a plaid index whose trained centroids and quantiser this build reuses
        instead of training its own, so that parts built separately (other machines, other
        slices of a knowledge base) can be merged into one sharded index."""
        params = check_build_params(method, {**params, "nbits": nbits, "centroids": centroids})
        ids = check_doc_ids(doc_ids)
        n, tokens, dim = check_embeddings(embeddings, len(ids))
        if n == 0:
            raise UserInputError("cannot build an index from zero documents")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        current = cls._current_data(folder, overwrite)
        legacy = [] if current else legacy_files(folder)
        clear_stale_data(folder, keep=current)
        data_name = new_data_name()
        data = folder / data_name
        data.mkdir()
        start = time.perf_counter()
        try:
            bar, progress = _progress(n, f"indexing ({method})", show_progress)
            with bar:
                files, used, stats = ENGINES[method].build(data, embeddings, params, progress)
            store = IdStore(IdStore.kind_of(ids))
            files.update(_ids_files(data, 0, store.encode(ids)))
        except BaseException:
            shutil.rmtree(data, ignore_errors=True)
            raise
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND_SINGLE,
            "method": method,
            "created": now(), "updated": now(), "library": "rag-vqa", "data": data_name,
            "dims": {"tokens": tokens, "dim": dim}, "id_kind": store.kind,
            "params": used,
            "counts": {"rows": n, "live": n, "trained_rows": int(used.get("trained_rows", n))},
            "segments": [{"rows": n, "stats": stats}], "files": files, "deleted_file": None,
            "metadata": metadata or {}, "rebuild_advised": None,
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        write_manifest(folder, manifest)  # the swap: from here on the new index is the index
        clear_stale_data(folder, keep=data_name)
        for name in legacy:
            (folder / name).unlink(missing_ok=True)
        logger.info("built %s index of %d documents in %.1fs", method, n,
                    manifest["build_seconds"])
        return cls.load(folder, verify="size")

    @staticmethod
    def _current_data(folder: Path, overwrite: bool) -> str | None:
        """The data folder of the index already in ``folder`` (kept until the new one commits)."""
        if not (folder / MANIFEST).exists():
            return None
        if not overwrite:
            raise FileExistsError(f"{folder} already holds an index; pass overwrite=True "
                                  "to replace it")
        try:
            return read_manifest(folder)["data"]
        except IndexFormatError as exc:  # damaged or older: nothing worth keeping
            logger.warning("replacing an unreadable index in %s (%s)", folder, exc)
            return None

    @staticmethod
    def read_info(path: str | os.PathLike) -> IndexManifest:
        """The manifest of the index at ``path``, its schema and seal checked, without opening
        the index (for reports, caches, and checks before a load)."""
        return IndexManifest(read_manifest(Path(path)))

    @classmethod
    def load(cls, path: str | os.PathLike, verify: str = "full",
             show_progress: bool | None = None) -> MultiVectorIndex:
        """Open an index, single or sharded. ``verify``: "full" (default) checks the digest of
        every file (about 0.5 s per 10 GB from the page cache); "size" checks sizes only and
        "none" nothing but the manifest's own seal, for huge indexes on trusted storage. Every
        level checks the arrays' shapes and ranges, so a damaged file is refused, never
        searched."""
        folder = Path(path)
        manifest = read_manifest(folder)
        if manifest.get("kind") == KIND_SHARDED:
            from .sharded import ShardedIndex

            return ShardedIndex.open(folder, manifest, verify, show_progress)
        return cls.open(folder, manifest, verify, show_progress)

    @classmethod
    def open(cls, folder: Path, manifest: dict[str, Any], verify: str = "full",
             show_progress: bool | None = None) -> MultiVectorIndex:
        """The index of a checked ``manifest`` (read from ``folder``, or embedded in a sharded
        index's), its files verified at level ``verify``."""
        method = manifest["method"]
        if method not in ENGINES:
            raise IndexFormatError(f"{folder}: unknown index method {method!r}")
        data = folder / manifest["data"]
        verify_files(data, manifest["files"], verify, show_progress)
        try:
            engine = ENGINES[method].load(data, manifest)
            ids = IdStore(manifest["id_kind"])
            names = ["ids"] if ids.kind == "int" else ["ids_utf8", "ids_offsets"]
            for seg, info in enumerate(manifest["segments"]):
                arrays = {name: load_npy(data / segment_file(name, seg), mmap=False)
                          for name in names}
                IdStore.check(arrays, info["rows"], f"{data}/ids of segment {seg}")
                ids.append(arrays)
            deleted = np.zeros(len(ids), dtype=bool)
            if manifest.get("deleted_file"):
                name = check_data_name(manifest["deleted_file"], "tombstone file")
                deleted = load_npy(data / name, mmap=False).astype(bool)
        except (KeyError, TypeError) as exc:
            raise IndexFormatError(f"{folder}: the manifest does not describe its arrays "
                                   f"({type(exc).__name__}: {exc})") from exc
        if len(deleted) != len(ids) or len(engine.segments) != len(ids) or \
                len(ids) != manifest["counts"]["rows"]:
            raise IndexFormatError(f"{folder}: id, tombstone, vector and manifest counts "
                                   f"disagree ({len(ids)}, {len(deleted)}, "
                                   f"{len(engine.segments)}, {manifest['counts']['rows']})")
        dims = manifest["dims"]
        engine.check(dims["tokens"], dims["dim"], verify != "none")
        return cls(folder, manifest, engine, ids, deleted)

    @property
    def data_path(self) -> Path:
        return self.path / self.manifest["data"]

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, **params: Any) -> list[list[Hit]]:
        """Top-``k`` documents for each query of a (Q, tokens, dim) array, best first.

        Scores are MaxSim on the stored vectors (exact float16 copies when kept, else the
        decompressed ones). ``params`` tune the plaid stages: ``effort`` scales them all (1:
        the adaptive defaults; 2: more recall, ~2x the time), nprobe / candidates / ndocs /
        rescore set single ones (see params.py). A batch costs about what its queries cost
        one by one (the work is per query); more throughput comes from more processes (Ray
        workers), not larger batches."""
        params = check_search_params(params)
        results = self.search_rows(self._queries(queries), k, **params)
        return [[Hit(self.ids.id_at(int(r)), float(s)) for r, s in zip(rows, scores)]
                for rows, scores in results]

    def _queries(self, queries: Any) -> torch.Tensor:
        q = torch.as_tensor(np.asarray(queries) if not torch.is_tensor(queries) else queries)
        dim = self.manifest["dims"]["dim"]
        if q.dim() != 3 or q.shape[-1] != dim:
            raise UserInputError(f"queries must have shape (Q, tokens, {dim}), "
                                 f"got {tuple(q.shape)}")
        return q.float()

    def search_rows(self, queries: torch.Tensor, k: int, **params: Any
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) per query for float32 queries: ``search`` without the ids."""
        if k < 1:
            raise UserInputError(f"k must be >= 1, got {k}")
        deleted = torch.from_numpy(self.deleted) if self.deleted.any() else None
        return self.engine.search(queries, k, deleted, **params)

    # -- changes ----------------------------------------------------------------------------------
    def add(self, doc_ids: Sequence[Any], embeddings: Any,
            show_progress: bool | None = None) -> AddReport:
        """Append documents using the existing centroids (no retraining); ``save`` commits."""
        ids = check_doc_ids(doc_ids)
        n, tokens, dim = check_embeddings(embeddings, len(ids))
        dims = self.manifest["dims"]
        if (tokens, dim) != (dims["tokens"], dims["dim"]):
            raise UserInputError(f"embeddings are ({tokens}, {dim}) per document; this index holds "
                             f"({dims['tokens']}, {dims['dim']})")
        if n == 0:
            return AddReport(0, self.num_rows, len(self), self.manifest.get("rebuild_advised"))
        lookup = self.ids.lookup()
        live = [i for i in ids if i in lookup and not self.deleted[lookup[i]]]
        if live:
            raise UserInputError(f"document ids already in the index: {live[:10]} (remove them "
                             "first to replace them)")
        seg = len(self.manifest["segments"])
        bar, progress = _progress(n, "adding", show_progress)
        with bar:
            files, stats = self.engine.add_segment(self.data_path, seg, embeddings, progress,
                                                   self.manifest["params"])
        files.update(_ids_files(self.data_path, seg, self.ids.encode(ids)))
        self.ids.append({name.rsplit("-", 1)[0]: load_npy(self.data_path / name, mmap=False)
                         for name in files if name.startswith("ids")})
        self.deleted = np.concatenate([self.deleted, np.zeros(n, dtype=bool)])
        self.manifest["files"].update(files)
        self.manifest["segments"].append({"rows": n, "stats": stats})
        self.manifest["rebuild_advised"] = self._rebuild_advice()
        self._dirty = True
        if self.manifest["rebuild_advised"]:
            logger.warning("index %s: %s", self.path, self.manifest["rebuild_advised"])
        return AddReport(n, self.num_rows, len(self), self.manifest["rebuild_advised"])

    def _rebuild_advice(self) -> str | None:
        if self.method != "plaid":
            return None
        trained = self.manifest["counts"]["trained_rows"]
        added = self.num_rows - trained
        if added > 0.5 * trained:
            return (f"{added} documents were added after the centroids were trained on {trained}; "
                    "rebuilding would adapt centroids and quantiser to the new data")
        base = self.manifest["segments"][0]["stats"]
        for seg in self.manifest["segments"][1:]:
            stats = seg["stats"]
            if stats["residual_norm_mean"] > 1.25 * base["residual_norm_mean"] or (
                    stats["clip_fraction"] > max(0.01, 3 * base["clip_fraction"])):
                return ("added documents fit the trained centroids poorly (residuals "
                        f"{stats['residual_norm_mean']:.3f} vs {base['residual_norm_mean']:.3f} "
                        "at build); a rebuild would restore search quality")
        return None

    def remove(self, doc_ids: Sequence[Any]) -> int:
        """Tombstone documents (all or nothing: unknown ids raise KeyError naming them)."""
        lookup = self.ids.lookup()
        rows, missing = [], []
        for i in doc_ids:
            i = int(i) if isinstance(i, np.integer) else i
            row = lookup.get(i)
            if row is None or self.deleted[row]:
                missing.append(i)
            else:
                rows.append(row)
        if missing:
            raise KeyError(f"not in the index: {missing[:10]}"
                           + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        self.deleted[rows] = True
        self._dirty = True
        return len(rows)

    def save(self) -> None:
        """Commit ``add`` / ``remove`` changes (new files first, the manifest last)."""
        if not self._dirty:
            return
        obsolete = self.stage_save()
        write_manifest(self.path, self.manifest)
        self.finish_save(obsolete)

    def stage_save(self) -> list[str]:
        """Write the files a save needs (the tombstones) and update the manifest in memory; the
        caller commits the manifest, then calls :meth:`finish_save` with the returned names
        (files the committed manifest no longer lists)."""
        manifest = self.manifest
        old_deleted = manifest.get("deleted_file")
        if self.deleted.any():
            version = int(old_deleted.split("-")[1].split(".")[0]) + 1 if old_deleted else 1
            name = segment_file("deleted", version)
            manifest["files"][name] = write_npy(self.data_path, name, self.deleted)
            manifest["deleted_file"] = name
        else:
            manifest["deleted_file"] = None
        obsolete = []
        if old_deleted and old_deleted != manifest["deleted_file"]:
            manifest["files"].pop(old_deleted, None)
            obsolete.append(old_deleted)
        manifest["counts"].update({"rows": self.num_rows, "live": len(self)})
        manifest["updated"] = now()
        return obsolete

    def finish_save(self, obsolete: list[str]) -> None:
        for name in obsolete:
            (self.data_path / name).unlink(missing_ok=True)
        self._dirty = False

    @property
    def dirty(self) -> bool:
        return self._dirty

    def resident_bytes(self) -> dict[str, int]:
        """Bytes of the arrays a search reads for every query or every candidate (everything but
        the optional float16 copy), in total and per live document."""
        skip = ("embeddings-",) if self.method == "plaid" else ()
        total = sum(entry["bytes"] for name, entry in self.manifest["files"].items()
                    if not name.startswith(skip))
        return {"total": total, "per_document": total // max(len(self), 1)}

"""Encoded passages on disk, one shard of consecutive KB rows at a time.

A shard is ``shard-NNNNN.npy`` (float16, (rows, 32, 128)) plus ``shard-NNNNN.json`` (its rows,
digest and image report). Both are written to temporary names and renamed, the JSON last: a
shard counts as finished only when its JSON exists and the array matches it, so a build killed at
any moment (even ``kill -9``) resumes from the last finished shard.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever.fileio import atomic_write, atomic_write_json, file_digest

__all__ = ["ShardInfo", "ShardSet", "ShardedArray", "PlanMismatch"]


class PlanMismatch(ValueError):
    """An unfinished build in the output folder was started with other inputs."""


@dataclass
class ShardInfo:
    index: int
    start: int
    stop: int
    digest: str = ""                                      # xxh3-128 of the array file
    images: dict[str, int] = field(default_factory=dict)   # ok / none / missing / broken
    problems: list[dict[str, Any]] = field(default_factory=list)  # first few broken/missing
    seconds: float = 0.0


class ShardSet:
    """The shards of one build, under ``folder`` (usually INDEX/encode)."""

    def __init__(self, folder: Path, total: int, shard_size: int) -> None:
        self.folder = folder
        self.total = total
        self.shard_size = shard_size

    @property
    def count(self) -> int:
        return -(-self.total // self.shard_size)

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.shard_size, min(self.total, (index + 1) * self.shard_size)

    def array_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.npy"

    def info_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.json"

    def check_plan(self, plan: dict[str, Any]) -> bool:
        """Record the build's inputs, or check them against an unfinished build's; True when
        there is earlier work to resume."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "plan.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old != plan:
                changed = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
                raise PlanMismatch(
                    f"{self.folder} holds an unfinished build with other inputs (differs in: "
                    f"{', '.join(changed)}); use another --out, or delete {self.folder}")
            return True
        atomic_write_json(path, plan, sort_keys=True)
        return False

    def finished(self, index: int, verify: bool = True) -> ShardInfo | None:
        """The shard's info if it is complete and intact, else None (it will be redone)."""
        info_path, array_path = self.info_path(index), self.array_path(index)
        if not info_path.exists() or not array_path.exists():
            return None
        try:
            info = ShardInfo(**json.loads(info_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):  # torn by hand, or written by an older version: redo
            return None
        if (info.start, info.stop) != self.bounds(index):
            return None
        if verify and file_digest(array_path) != info.digest:
            return None
        return info

    def write(self, info: ShardInfo, features: np.ndarray) -> ShardInfo:
        array = np.ascontiguousarray(features, dtype=np.float16)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array)

        atomic_write(self.array_path(info.index), write)
        info.digest = file_digest(self.array_path(info.index))
        atomic_write_json(self.info_path(info.index), asdict(info), sort_keys=True)
        return info

    def arrays(self) -> ShardedArray:
        return ShardedArray([np.load(self.array_path(i), mmap_mode="r") for i in range(self.count)])

    def remove(self) -> None:
        for path in self.folder.glob("shard-*"):
            path.unlink()
        (self.folder / "plan.json").unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


class ShardedArray:
    """Memory-mapped shards seen as one (N, tokens, dim) array: slices and integer arrays."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.bases = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.bases[-1]),) + tuple(parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            blocks = []
            for i, part in enumerate(self.parts):
                lo, hi = max(start, self.bases[i]), min(stop, self.bases[i + 1])
                if lo < hi:
                    blocks.append(part[lo - self.bases[i]:hi - self.bases[i]])
            return np.concatenate(blocks) if blocks else np.empty((0,) + self.shape[1:],
                                                                  self.dtype)
        rows = np.asarray(key, dtype=np.int64)
        which = np.searchsorted(self.bases, rows, side="right") - 1
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        for i in np.unique(which):
            picked = np.flatnonzero(which == i)
            out[picked] = self.parts[i][rows[picked] - self.bases[i]]
        return out

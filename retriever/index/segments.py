"""Row-indexed arrays split into segments (one per build or add), read as one."""

from __future__ import annotations

import numpy as np

__all__ = ["Segments", "iter_chunks"]


def iter_chunks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(total, start + size)


class Segments:
    """Named arrays per segment, all indexed by document row along their first axis."""

    def __init__(self) -> None:
        self.bases: list[int] = [0]
        self.arrays: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return self.bases[-1]

    def append(self, arrays: dict[str, np.ndarray], rows: int) -> None:
        self.arrays.append(arrays)
        self.bases.append(self.bases[-1] + rows)

    def has(self, name: str) -> bool:
        return bool(self.arrays) and all(name in seg for seg in self.arrays)

    def take(self, name: str, rows: np.ndarray) -> np.ndarray:
        """``arrays[name][rows]`` across segments, in the order of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.arrays) == 1:
            return np.asarray(self.arrays[0][name][rows])
        seg = np.searchsorted(self.bases, rows, side="right") - 1
        first = self.arrays[0][name]
        out = np.empty((len(rows),) + first.shape[1:], dtype=first.dtype)
        for s in np.unique(seg):
            picked = np.flatnonzero(seg == s)
            out[picked] = self.arrays[s][name][rows[picked] - self.bases[s]]
        return out

    def ranges(self, name: str, chunk: int):
        """(global start row, array block) over every segment, ``chunk`` rows at a time."""
        for s, seg in enumerate(self.arrays):
            array = seg[name]
            for start, stop in iter_chunks(array.shape[0], chunk):
                yield self.bases[s] + start, array[start:stop]

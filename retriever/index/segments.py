"""Row-indexed arrays split into segments (one per build or add), read as one.

Arrays a search reads for every query (codes, residuals) are memory-mapped and stay resident
once touched. The float16 copy a plaid search reads a few rows of per query (for the final
exact scores) is read with positional reads (``os.pread``) instead: it costs the process no
memory beyond those rows, and the operating system's page cache keeps what is hot when RAM
allows.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import torch

__all__ = ["Segments", "iter_chunks", "read_rows", "readonly_tensor", "segment_file"]

_FDS: dict[str, int] = {}
_FDS_LOCK = threading.Lock()


def segment_file(name: str, seg: int, suffix: str = ".npy") -> str:
    """The file of array ``name`` of segment ``seg`` (``codes-00003.npy``): one spelling for
    every engine's writer and reader."""
    return f"{name}-{seg:05d}{suffix}"


def iter_chunks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(total, start + size)


def readonly_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over a read-only array (a memory map) without a copy; it is only ever read, so
    torch's warning about writing to it does not apply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _file_of(array: np.ndarray) -> tuple[int, int] | None:
    """(file descriptor, byte offset of row 0) of a C-ordered memory-mapped .npy, else None."""
    name = getattr(array, "filename", None)
    if name is None or not array.flags.c_contiguous or not isinstance(array, np.memmap):
        return None
    with _FDS_LOCK:
        fd = _FDS.get(name)
        if fd is None:  # kept open for the life of the process: indexes are few and long-lived
            fd = _FDS[name] = os.open(name, os.O_RDONLY)
    return fd, int(array.offset)


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` by one positional read per row (rows of a few KB: the float16 copy)."""
    located = _file_of(array)
    if located is None:
        return np.asarray(array[rows])
    fd, base = located
    row_bytes = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    out = np.empty((len(rows),) + array.shape[1:], dtype=array.dtype)
    flat = out.reshape(len(rows), -1).view(np.uint8)
    for i, row in enumerate(rows.tolist()):
        got = os.preadv(fd, [flat[i]], base + row * row_bytes)
        if got != row_bytes:
            raise OSError(f"{array.filename}: short read of row {row}")
    return out


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

    def take(self, name: str, rows: np.ndarray, pread: bool = False) -> np.ndarray:
        """``arrays[name][rows]`` across segments, in the order of ``rows``; ``pread`` reads
        them with positional reads instead of through the memory map."""
        rows = np.asarray(rows, dtype=np.int64)
        # np.take, not array[rows]: 3-4x faster on a map for short rows (codes: 64 bytes)
        get = read_rows if pread else (lambda array, picked: np.take(array, picked, axis=0))
        if len(self.arrays) == 1:
            return get(self.arrays[0][name], rows)
        seg = np.searchsorted(self.bases, rows, side="right") - 1
        first = self.arrays[0][name]
        out = np.empty((len(rows),) + first.shape[1:], dtype=first.dtype)
        for s in np.unique(seg):
            picked = np.flatnonzero(seg == s)
            out[picked] = get(self.arrays[s][name], rows[picked] - self.bases[s])
        return out

    def ranges(self, name: str, chunk: int):
        """(global start row, array block) over every segment, ``chunk`` rows at a time
        (through the memory map: a scan reads every row anyway, and mapped pages cost no copy)."""
        for s, seg in enumerate(self.arrays):
            array = seg[name]
            for start, stop in iter_chunks(array.shape[0], chunk):
                yield self.bases[s] + start, array[start:stop]

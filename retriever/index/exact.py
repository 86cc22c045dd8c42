"""Brute-force MaxSim over every stored vector: the ground truth other methods are judged by.

Documents are scored in chunks (a few thousand at a time, float16 on disk, float32 in compute)
with torch's multi-threaded matrix products; queries are batched so each chunk is read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .segments import Segments, iter_chunks
from .storage import IndexFormatError, NpyWriter, load_npy

__all__ = ["ExactEngine", "topk_merge"]


def topk_merge(best: tuple[torch.Tensor, torch.Tensor] | None, scores: torch.Tensor,
               rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k of (Q, n) scores whose columns are document ``rows``."""
    if best is not None:
        scores = torch.cat([best[0], scores], dim=1)
        rows = torch.cat([best[1], rows.expand(scores.shape[0], -1)
                          if rows.dim() == 1 else rows], dim=1)
    elif rows.dim() == 1:
        rows = rows.expand(scores.shape[0], -1)
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    return top.values, torch.gather(rows, 1, top.indices)


def maxsim_block(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """(Q, L, D) x (n, L', D) -> (Q, n) sum over query tokens of the best document token."""
    q, n = queries.shape[0], docs.shape[0]
    sims = docs.reshape(-1, docs.shape[-1]) @ queries.reshape(-1, queries.shape[-1]).T
    return sims.view(n, docs.shape[1], q, queries.shape[1]).amax(dim=1).sum(dim=-1).T


class ExactEngine:
    """Float16 vectors per segment; exact MaxSim in float32."""

    method = "exact"

    def __init__(self, segments: Segments) -> None:
        self.segments = segments

    # -- writing ----------------------------------------------------------------------------
    @staticmethod
    def write_segment(folder: Path, seg: int, embeddings: Any, chunk: int, progress) -> dict:
        name = f"embeddings-{seg:05d}.npy"
        writer = NpyWriter(folder, name, tuple(embeddings.shape), np.float16)
        try:
            for start, stop in iter_chunks(embeddings.shape[0], chunk):
                writer.array[start:stop] = np.asarray(embeddings[start:stop], dtype=np.float16)
                progress(stop - start)
        except BaseException:
            writer.abort()
            raise
        return {name: writer.close()}

    @classmethod
    def build(cls, folder: Path, embeddings: Any, params: dict, progress) -> tuple[dict, dict, dict]:
        files = cls.write_segment(folder, 0, embeddings, params.get("chunk_size", 4096), progress)
        return files, {}, {}

    @classmethod
    def load(cls, folder: Path, manifest: dict) -> "ExactEngine":
        segments = Segments()
        for seg, info in enumerate(manifest["segments"]):
            emb = load_npy(folder / f"embeddings-{seg:05d}.npy")
            segments.append({"embeddings": emb}, info["rows"])
        return cls(segments)

    def check(self, tokens: int, dim: int, deep: bool = True) -> None:
        """Shapes and dtypes of every segment (``deep``: for engines with codes to check)."""
        for s, seg in enumerate(self.segments.arrays):
            emb = seg["embeddings"]
            rows = self.segments.bases[s + 1] - self.segments.bases[s]
            if emb.shape != (rows, tokens, dim) or emb.dtype != np.float16:
                raise IndexFormatError(f"embeddings of segment {s}: {emb.dtype} {emb.shape}, "
                                       f"expected float16 {(rows, tokens, dim)}")

    def add_segment(self, folder: Path, seg: int, embeddings: Any, progress,
                    params: dict | None = None) -> tuple[dict, dict]:
        """Append rows (exact search has no parameters to apply)."""
        files = self.write_segment(folder, seg, embeddings, 4096, progress)
        emb = load_npy(folder / f"embeddings-{seg:05d}.npy")
        self.segments.append({"embeddings": emb}, emb.shape[0])
        return files, {}

    # -- searching ----------------------------------------------------------------------------
    def search(self, queries: torch.Tensor, k: int, deleted: torch.Tensor | None,
               chunk_size: int = 2048, **_: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        best = None
        for start, block in self.segments.ranges("embeddings", chunk_size):
            docs = torch.from_numpy(np.asarray(block, dtype=np.float32))
            scores = maxsim_block(queries, docs)
            rows = torch.arange(start, start + docs.shape[0])
            if deleted is not None:
                scores[:, deleted[start:start + docs.shape[0]]] = float("-inf")
            best = topk_merge(best, scores, rows, k)
        if best is None:
            return [(np.empty(0, np.int64), np.empty(0, np.float32))] * queries.shape[0]
        out = []
        for values, rows in zip(best[0], best[1]):
            keep = torch.isfinite(values)
            out.append((rows[keep].numpy(), values[keep].numpy()))
        return out

"""Brute-force MaxSim over every stored vector: the ground truth other methods are judged by.

Documents are float16 on disk and scored a block at a time. Where the CPU multiplies bfloat16
natively (AVX512-BF16 / AMX: 4-5x the float32 rate), every block is first scored in bfloat16 and
only the documents that could still be in the top k are scored again in float32; a rigorous
bound on the bfloat16 error makes the result exactly the float32 one (see :func:`bf16_bound`).
Elsewhere the blocks are scored in float32 directly. Queries are batched so each block is read
and converted once, into buffers reused from block to block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..scoring import maxsim_block
from .engine import IndexEngine
from .params import ExactBuildParams
from .segments import Segments, iter_chunks, readonly_tensor, segment_file
from .storage import IndexFormatError, NpyWriter, load_npy

__all__ = [
    "ExactEngine",
    "as_float32",
    "bf16_bound",
    "exact_search",
    "fast_bf16",
    "maxsim_block",
    "topk_merge",
]

# bfloat16 keeps 8 significant bits: rounding to it moves a value by at most 2^-8 of itself.
_BF16_U = 2.0 ** -8
# Per query token, |bf16 q.d - float32 q.d| <= _BF16_FACTOR * |q| * max|d|: rounding q and d
# (2u + u^2), the float32 accumulation of 128 exact products (< 1e-5) and rounding the result
# to bfloat16 (u (1 + 3u)) stay below 3u + 5u^2 + 1e-5 < 3.1u.
_BF16_FACTOR = 3.1 * _BF16_U
_SIMS_BUDGET = 48 << 20  # bytes of similarity block per document block (sizes the blocks)


@lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """bfloat16 matrix products beat float32 only with native support (AVX512-BF16 / AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def as_float32(block: Any) -> torch.Tensor:
    """A float16 (memory-mapped) block as a float32 tensor."""
    return torch.from_numpy(np.asarray(block, dtype=np.float32))


def bf16_bound(queries: torch.Tensor, max_norm: float) -> torch.Tensor:
    """(Q,) bound on |bfloat16 MaxSim - float32 MaxSim| for any document whose vectors have
    norms <= ``max_norm``: per query token the error of one dot product is at most
    3.1 * 2^-8 * |q_i| * |d_j| (see _BF16_FACTOR); a max over j moves by at most the largest
    error and the sum over i adds them. A tiny absolute term covers denormals."""
    return _BF16_FACTOR * queries.float().norm(dim=-1).sum(dim=-1) * float(max_norm) + 1e-20


def _block_rows(num_queries: int, q_tokens: int, d_tokens: int, limit: int) -> int:
    per_doc = d_tokens * num_queries * q_tokens * 6  # bfloat16 sims + their float32 maxima
    return int(max(64, min(limit, _SIMS_BUDGET // max(per_doc, 1))))


def exact_search(queries: torch.Tensor, blocks: Callable[[int], Iterable[tuple[int, Any]]],
                 take: Callable[[np.ndarray], np.ndarray], k: int,
                 deleted: torch.Tensor | None = None, max_norm: float | None = None,
                 chunk_size: int = 2048, use_bf16: bool | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact top-``k`` MaxSim of float32 ``queries`` (Q, L, D) over float16 documents.

    ``blocks(rows)`` yields (first row, (n, L', D) float16 block) over every document;
    ``take(rows)`` returns the float16 vectors of given rows; ``max_norm`` bounds every stored
    vector's norm (required for the bfloat16 pass, which is skipped without it). Returns, per
    query, (rows, float32 scores) best first; deleted rows never appear."""
    queries = queries.float()
    nq, q_tokens, _ = queries.shape
    use_bf16 = (fast_bf16() if use_bf16 is None else use_bf16) and max_norm is not None
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    pool: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    margin = 2 * bf16_bound(queries, max_norm) if use_bf16 else None
    q_in = queries.bfloat16() if use_bf16 else queries
    buf: torch.Tensor | None = None  # float32, or bfloat16 for the pre-pass
    rows_per_block: int | None = None
    for start, block in blocks(chunk_size):
        if rows_per_block is None:
            rows_per_block = _block_rows(nq, q_tokens, block.shape[1], chunk_size)
        for lo, hi in iter_chunks(block.shape[0], rows_per_block):
            part = readonly_tensor(np.asarray(block[lo:hi]))
            n = part.shape[0]
            if buf is None or buf.shape[0] < n or buf.shape[1:] != part.shape[1:]:
                buf = torch.empty((max(n, rows_per_block), *part.shape[1:]),
                                  dtype=q_in.dtype)
            docs = buf[:n]
            docs.copy_(part)  # float16 -> bfloat16 directly: the same rounding as via float32
            scores = maxsim_block(q_in, docs)
            rows = torch.arange(start + lo, start + hi)
            if deleted is not None:
                scores[:, deleted[start + lo:start + hi]] = float("-inf")
            best = topk_merge(best, scores, rows, k)
            if use_bf16:  # keep what could still reach the top k; see the module docstring
                floor = best[0][:, -1] if best[0].shape[1] == k else \
                    torch.full((nq,), float("-inf"))
                qi, ci = torch.nonzero(scores >= (floor - margin)[:, None], as_tuple=True)
                pool.append((qi, rows[ci], scores[qi, ci]))
    if best is None:
        return [(np.empty(0, np.int64), np.empty(0, np.float32))] * nq
    if not use_bf16:
        return [(r[torch.isfinite(v)].numpy(), v[torch.isfinite(v)].numpy())
                for v, r in zip(best[0], best[1])]
    return _rescore(queries, pool, best, margin, take, k)


def _rescore(queries: torch.Tensor, pool: list, best: tuple[torch.Tensor, torch.Tensor],
             margin: torch.Tensor, take: Callable[[np.ndarray], np.ndarray], k: int
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float32 MaxSim for every pooled document within ``margin`` of the final k-th bfloat16
    score: the true top k is among them (each true score is within margin / 2 of its bound)."""
    qi = torch.cat([p[0] for p in pool])
    rows = torch.cat([p[1] for p in pool])
    approx = torch.cat([p[2] for p in pool])
    floor = best[0][:, -1] if best[0].shape[1] == k else torch.full((len(queries),),
                                                                     float("-inf"))
    keep = torch.isfinite(approx) & (approx >= (floor - margin)[qi])
    qi, rows = qi[keep], rows[keep]
    order = torch.argsort(qi, stable=True)
    qi, rows = qi[order], rows[order]
    counts = torch.bincount(qi, minlength=len(queries)).tolist()
    out = []
    for q, picked in enumerate(torch.split(rows, counts)):
        if len(picked) == 0:
            out.append((np.empty(0, np.int64), np.empty(0, np.float32)))
            continue
        picked = torch.unique(picked)  # sorted: reads the memory map in order
        scores = maxsim_block(queries[q:q + 1], as_float32(take(picked.numpy())))[0]
        top = scores.topk(min(k, len(picked)))
        out.append((picked[top.indices].numpy(), top.values.numpy()))
    return out


def max_vector_norm(block: np.ndarray) -> float:
    """Largest norm of the vectors of a (n, L, D) block (float32 arithmetic)."""
    if block.size == 0:
        return 0.0
    x = torch.from_numpy(np.asarray(block, dtype=np.float32))
    return float(x.norm(dim=-1).max())


class ExactEngine(IndexEngine):
    """Float16 vectors per segment; exact MaxSim in float32."""

    method = "exact"

    def __init__(self, segments: Segments, max_norm: float | None = None) -> None:
        self.segments = segments
        self.max_norm = max_norm

    # -- writing ----------------------------------------------------------------------------
    @staticmethod
    def write_segment(folder: Path, seg: int, embeddings: Any, chunk: int, progress
                      ) -> tuple[dict, float]:
        """Write one segment's float16 vectors; returns its files and its largest vector norm."""
        name = segment_file("embeddings", seg)
        writer = NpyWriter(folder, name, tuple(embeddings.shape), np.float16)
        norm = 0.0
        try:
            for start, stop in iter_chunks(embeddings.shape[0], chunk):
                block = np.asarray(embeddings[start:stop], dtype=np.float16)
                writer.array[start:stop] = block
                norm = max(norm, max_vector_norm(block))
                progress(stop - start)
        except BaseException:
            writer.abort()
            raise
        return {name: writer.close()}, norm

    @classmethod
    def build(cls, folder: Path, embeddings: Any, params: dict,
              progress) -> tuple[dict, dict, dict]:
        files, norm = cls.write_segment(folder, 0, embeddings, params["chunk_size"], progress)
        return files, {"max_norm": norm}, {"max_norm": norm}

    @classmethod
    def load(cls, folder: Path, manifest: dict) -> ExactEngine:
        segments = Segments()
        for seg, info in enumerate(manifest["segments"]):
            emb = load_npy(folder / segment_file("embeddings", seg))
            segments.append({"embeddings": emb}, info["rows"])
        norm = manifest["params"].get("max_norm")
        if not isinstance(norm, (int, float)) or isinstance(norm, bool) or norm < 0:
            raise IndexFormatError(f"{folder}: params.max_norm should be a norm, got {norm!r}")
        return cls(segments, float(norm))

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
        """Append rows; the index's norm bound grows to cover them (``params`` is updated)."""
        files, norm = self.write_segment(folder, seg, embeddings, ExactBuildParams.chunk_size,
                                         progress)
        emb = load_npy(folder / segment_file("embeddings", seg))
        self.segments.append({"embeddings": emb}, emb.shape[0])
        self.max_norm = max(self.max_norm or 0.0, norm)
        if params is not None:
            params["max_norm"] = self.max_norm
        return files, {"max_norm": norm}

    # -- searching ----------------------------------------------------------------------------
    def search(self, queries: torch.Tensor, k: int, deleted: torch.Tensor | None,
               chunk_size: int | None = None, **_: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        return exact_search(queries, lambda rows: self.segments.ranges("embeddings", rows),
                            lambda rows: self.segments.take("embeddings", rows), k, deleted,
                            self.max_norm, chunk_size or 2048)

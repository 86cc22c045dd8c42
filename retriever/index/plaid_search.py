"""Plaid search, stage by stage, for a group of queries at a time.

  1. S = Q . C^T: every query token against every centroid, in int8 where the CPU has int8
     products (else bfloat16 or float32), laid out query-major; each token's best
     centroids by a two-level (block maxima, then members) exact top-k.
  2. Candidates: each query token's ``nprobe`` best centroids; a document gains, for every
     probed centroid it holds, that centroid's score above the token's first unprobed one
     (doc-level posting lists; the gains of the tokens that probed a centroid are summed per
     centroid first). The ~``candidates`` best, picked by a threshold estimated on a sample.
  3. Centroid interaction, soft: sum_i log sum_j exp(beta S[i, code(d_j)]), a smooth
     sum-of-max over each candidate's codes computed by one ``embedding_bag`` (a sum of table
     rows, vectorised): about 50x cheaper than gathering and maximising, as good for
     ranking. Top ``ndocs``.
  4. Residual scoring: MaxSim on the decompressed vectors (less a constant per query), as a
     batched matrix product on the unpacked codes plus the centroid scores. Top ``rescore``.
  5. Exact MaxSim on the float16 vectors (read by positional reads, see segments.py) when the
     index keeps them, else on the decompressed ones; top ``k``.

Queries are processed in small groups so every stage is one call for the group, with buffers
reused from group to group (the int32 products included): freshly allocated tensors of
megabytes cost more in page faults than the arithmetic on them (at 1M documents, 3,800 faults
and 6 ms a query when two of them were allocated per search).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..scoring import maxsim_pairs
from .params import plaid_defaults

if TYPE_CHECKING:
    from .plaid import PlaidEngine

__all__ = ["BETA", "BLOCK", "Workspace", "int8_matmul", "padded_centroids", "plaid_search",
           "to_int8"]

# sharpness of the soft maximum of stage 3 (scores are cosines): of 10 to 40, 30 ranked best on
# both benchmark distributions (hard 100K recall@10 0.980 at 20, 0.987 at 30); exp(-2 * 30)
# still clears float32's smallest normal, so no candidate's sum underflows to zero
BETA = 30.0
# centroid scores per group of queries (8 MB of float32): 4 queries at 16K centroids, 1 at 64K;
# larger groups were no faster per query (their buffers outgrow the caches) and cost memory
_GROUP_ELEMENTS = 1 << 21
BLOCK = 64                # centroids per block of the two-level top-k of stage 1
_STAGE4_VECTORS = 8192     # document vectors per block of stage 4 (1 MB of levels)


class Workspace(threading.local):
    """Buffers reused across searches, one set per thread. A name is one block of memory
    whatever the type asked for, so a stage can use another's buffer once that one is done with
    it (stage 1's and stage 4's int32 products live in stage 3's table, stage 2's document
    scores in stage 4's levels): the search holds the largest stage's memory, not the sum."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
            ) -> torch.Tensor:
        nbytes = math.prod(shape) * dtype.itemsize
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < nbytes:
            buf = self.buffers[name] = torch.empty(max(nbytes, 8), dtype=torch.uint8)
        return buf[:nbytes].view(dtype).view(shape)


def padded_centroids(count: int) -> int:
    """Rows of stage 1's tables for ``count`` centroids: whole blocks of :data:`BLOCK`."""
    return -(-count // BLOCK) * BLOCK


def to_int8(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` rounded to 7 bits with one scale per slice along ``dim``: (int8 values, float
    scales with ``dim`` kept), so that ``values * scales`` approximates ``x``."""
    scale = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-30) / 127
    return torch.round(x / scale).to(torch.int8), scale


def _centroid_scores(centroids: Any, queries: torch.Tensor, dtype: torch.dtype, n_cent: int,
                     out: torch.Tensor, ws: Workspace) -> None:
    """Stage 1 into ``out`` (g, K', L) float32: every query token against every centroid,
    -inf on the padding rows past ``n_cent``.

    The product is computed as (K, g*L), the orientation that multiplies fastest. In int8
    (``centroids`` is then (int8 rows, per-row scales), both padded to K', see
    ``PlaidEngine.centroids_in``), each query token is rounded to 7 bits with its own scale:
    twice the speed of bfloat16 with about the same error (1e-3 of a cosine); these scores only
    choose and rank candidates, the final ones are exact."""
    g, padded, tokens = out.shape
    flat = queries.reshape(g * tokens, -1)
    if dtype == torch.int8:
        rows8, row_scale = centroids
        q8, scale = to_int8(flat, 1)
        scores = ws.get("table", (padded, g * tokens), torch.int32)      # table: free yet
        torch._int_mm(rows8, q8.T.contiguous(), out=scores)              # (K', g*L)
        out.copy_(scores.view(padded, g, tokens).transpose(0, 1))
        out.mul_(scale.view(g, 1, tokens)).mul_(row_scale.view(1, padded, 1))
    else:
        scores = centroids @ flat.to(dtype).T                             # (K, g*L)
        out[:, :n_cent].copy_(scores.view(n_cent, g, tokens).transpose(0, 1))
    out[:, n_cent:].fill_(float("-inf"))


def _block_topk(scores: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` best centroids of every query token of (g, K', L) ``scores`` (K' a multiple
    of the block size, padding -inf): (g*L, count) values and ids, best first.

    Two levels: the maximum of each block of 64 centroids, the ``count`` best blocks, then the
    best of their members. Exact (the ``count`` best entries lie in at most ``count`` blocks,
    whose maxima are at least the ``count``-th best), and about half the cost of a top-k over
    all K (0.6 against 1.1 ms per query at 16K centroids: one max pass is a vectorised sweep)."""
    g, padded, tokens = scores.shape
    blocks = scores.view(g, padded // BLOCK, BLOCK, tokens).amax(dim=2)  # (g, nb, L)
    count_b = min(count, blocks.shape[1])
    best = blocks.transpose(1, 2).topk(count_b, dim=2).indices            # (g, L, cb)
    cols = (best.unsqueeze(-1) * BLOCK + torch.arange(BLOCK)).view(g, tokens, -1)
    values = scores.transpose(1, 2).gather(2, cols)                        # (g, L, cb*B)
    top = values.topk(count, dim=2)
    ids = cols.gather(2, top.indices)
    return top.values.reshape(g * tokens, count), ids.reshape(g * tokens, count)


def _unpack_into(packed: torch.Tensor, nbits: int, out: torch.Tensor) -> None:
    """(n, bytes) codes -> (n, dim) uint8 levels in ``out``, dimensions in the order of
    :func:`level_order` (each bit field of every byte in turn: no interleaving copy)."""
    per = 8 // nbits
    width = packed.shape[1]
    if nbits == 8:
        out.copy_(packed)
        return
    mask = (1 << nbits) - 1
    for t in range(per):
        shift = 8 - nbits * (t + 1)
        field = out[:, t * width:(t + 1) * width]
        if t == 0:
            torch.bitwise_right_shift(packed, shift, out=field)
        elif shift == 0:
            torch.bitwise_and(packed, mask, out=field)
        else:
            torch.bitwise_right_shift(packed, shift, out=field)
            field.bitwise_and_(mask)


@lru_cache(maxsize=1)
def int8_matmul() -> bool:
    """torch._int_mm (int8 x int8 -> int32, VNNI on x86) works here."""
    try:
        a = torch.ones((32, 16), dtype=torch.int8)
        return bool(torch._int_mm(a, torch.ones((16, 8), dtype=torch.int8))[0, 0] == 16)
    except (RuntimeError, AttributeError):
        return False


def _add_dot_levels(levels: torch.Tensor, weights: torch.Tensor, nbits: int, out: torch.Tensor,
                    ws: Workspace) -> None:
    """``out`` (g, m, L) += levels (g, m, D) uint8 . weights (g, L, D), approximately: on int8
    (query weights rounded to 7 bits per token, error ~1e-3 of a score) where the CPU has int8
    products, else in float32; the int32 products are scaled and added in one pass. Stage 4
    only ranks; the final scores are exact."""
    g, _, dim = levels.shape
    if nbits < 8 and dim % 8 == 0 and weights.shape[1] % 8 == 0 and int8_matmul():
        w8, scale = to_int8(weights, 2)
        w8 = w8.transpose(1, 2).contiguous()
        scale = scale.transpose(1, 2)                                  # (g, 1, L)
        products = ws.get("table", out.shape[1:], torch.int32)  # stage 3 is done with it
        for i in range(g):
            torch._int_mm(levels[i].view(torch.int8), w8[i], out=products)
            out[i].addcmul_(products, scale[i])
        return
    out += torch.bmm(levels.float(), weights.transpose(1, 2))


def level_order(dim: int, nbits: int) -> torch.Tensor:
    """Dimension held by each column of :func:`_unpack_into`'s output."""
    per = 8 // nbits
    return torch.arange(dim).view(dim // per, per).T.reshape(-1)


def _select(acc: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, row) pairs of about the ``count`` best positive entries of each row of ``acc``:
    a threshold from a strided sample (one pass instead of a top-k over millions)."""
    g, n = acc.shape
    if n <= 4 * count:
        top = acc.topk(min(count, n), dim=1)
        keep = top.values > 0
        q = torch.arange(g).unsqueeze(1).expand(-1, top.indices.shape[1])
        return q[keep], top.indices[keep]
    stride = max(1, count // 256)
    sample = acc[:, ::stride]
    want = max(1, count // stride)
    threshold = sample.topk(min(want, sample.shape[1]), dim=1).values[:, -1]
    threshold = torch.clamp(threshold, min=torch.finfo(acc.dtype).tiny)
    flat = torch.from_numpy(np.flatnonzero((acc >= threshold[:, None]).numpy()))  # 5x nonzero()
    return flat // n, flat % n


def _dense_topk(q: torch.Tensor, rows: torch.Tensor, scores: torch.Tensor, g: int,
                count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, the ``count`` best of its (row, score) pairs (``q`` sorted): (g, c) rows and
    scores, -inf where a query had fewer."""
    if g == 1:  # one query (batch size 1): its pairs are already its row
        top = scores.topk(min(count, len(scores)))
        return rows[top.indices].unsqueeze(0), top.values.unsqueeze(0)
    counts = torch.bincount(q, minlength=g)
    width = max(1, int(counts.max()) if len(q) else 1)
    pos = torch.arange(len(q)) - (torch.cumsum(counts, 0) - counts)[q]
    dense = torch.full((g, width), float("-inf"))
    dense[q, pos] = scores
    ids = torch.zeros((g, width), dtype=torch.int64)
    ids[q, pos] = rows
    top = dense.topk(min(count, width), dim=1)
    return torch.gather(ids, 1, top.indices), top.values


def _ranges(starts: np.ndarray, lengths: np.ndarray, total: int) -> np.ndarray:
    """The positions ``starts[i] + 0 .. lengths[i] - 1`` of every range, concatenated, without
    a Python loop (a query probes about 300 posting lists)."""
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def _candidates(engine: PlaidEngine, ws: Workspace, top_values: torch.Tensor,
                top_ids: torch.Tensor, g: int, tokens: int, nprobe: int, count: int,
                deleted: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2 for a group: (query, row) pairs of the candidates."""
    k = engine.num_centroids
    n = len(engine.segments)
    probe = min(nprobe, top_ids.shape[1])
    fallback = top_values[:, probe] if top_values.shape[1] > probe else torch.zeros(len(top_ids))
    gains = (top_values[:, :probe] - fallback[:, None]).reshape(-1)
    owner = (torch.arange(g * tokens) // tokens).repeat_interleave(probe)
    keys, inverse = torch.unique(owner * k + top_ids[:, :probe].reshape(-1), return_inverse=True)
    weights = torch.zeros(len(keys)).index_add_(0, inverse, gains)
    query_of, centroid = (keys // k).numpy(), (keys % k).numpy()
    acc = ws.get("levels", (g, n))  # stage 4's buffer, free until then
    acc.zero_()
    flat = acc.view(-1)
    weights_np = weights.numpy()
    for (offsets, docs), base in zip(engine.postings, engine.segments.bases):
        starts = offsets[centroid]
        lengths = offsets[centroid + 1] - starts
        total = int(lengths.sum())
        if not total:
            continue
        rows = np.take(docs, _ranges(starts, lengths, total))  # every probed list at once
        target = torch.from_numpy(rows).to(torch.int64)
        if g > 1:
            target += torch.from_numpy(np.repeat(query_of * n + base, lengths))
        elif base:
            target += base
        # scatter_add_, not index_add_: the same sum, ~1.8x faster over 500K postings
        flat.scatter_add_(0, target, torch.from_numpy(np.repeat(weights_np, lengths)))
    if deleted is not None:
        acc.masked_fill_(deleted[None, :], float("-inf"))
    return _select(acc, count)


def _codes(engine: PlaidEngine, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(engine.segments.take("codes", rows)).to(torch.int64)


def _soft_interaction(engine: PlaidEngine, table: torch.Tensor, q: torch.Tensor,
                      rows: torch.Tensor, g: int, count: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 3: soft centroid interaction of every candidate; (g, count) best rows."""
    codes = _codes(engine, rows.numpy())
    codes.add_((q * (table.shape[0] // g))[:, None])
    scores = F.embedding_bag(codes, table, mode="sum").float().log_().sum(dim=1)
    return _dense_topk(q, rows, scores, g, count)


def _residual_scores(engine: PlaidEngine, ws: Workspace, queries: torch.Tensor,
                     centroid_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Stage 4: (g, r) approximate MaxSim of each query with its rows (-1: none), a block of
    about :data:`_STAGE4_VECTORS` document vectors at a time (buffers of a few MB)."""
    g, r = rows.shape
    valid = rows >= 0
    flat = torch.where(valid, rows, 0)
    # q . (centroid + residual) = S[code] + offset + weights . levels; the offset is the same
    # for every document of a query token, so it cannot change this stage's ranking: left out
    _, weights = engine.codec.query_terms(queries)                    # (g, L, D)
    weights = weights[:, :, level_order(engine.codec.dim, engine.codec.nbits)]
    tokens = engine.segments.arrays[0]["codes"].shape[1]  # stage 4 runs only with documents
    step = max(1, _STAGE4_VECTORS // max(1, g * tokens))
    out = torch.empty((g, r))
    for start in range(0, r, step):
        block = flat[:, start:start + step]
        out[:, start:start + block.shape[1]] = _residual_block(engine, ws, weights, centroid_t,
                                                               block)
    return out.masked_fill_(~valid, float("-inf"))


def _residual_block(engine: PlaidEngine, ws: Workspace, weights: torch.Tensor,
                    centroid_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    g, r = rows.shape
    flat = rows.reshape(-1).numpy()
    codes = _codes(engine, flat)
    packed = torch.from_numpy(engine.segments.take("residuals", flat))
    n, tokens = codes.shape
    levels = ws.get("levels", (n * tokens, engine.codec.dim), torch.uint8)
    _unpack_into(packed.view(n * tokens, -1), engine.codec.nbits, levels)
    base = ws.get("centroid_rows", (n * tokens, weights.shape[1]))
    per_query = centroid_t.shape[0] // g
    index = codes.view(g, -1).add_(torch.arange(g)[:, None] * per_query).view(-1)
    torch.index_select(centroid_t, 0, index, out=base)
    base = base.view(g, r * tokens, -1)
    _add_dot_levels(levels.view(g, r * tokens, -1), weights, engine.codec.nbits, base, ws)
    return base.view(g, r, tokens, -1).amax(dim=2).sum(dim=-1)


def _exact_scores(engine: PlaidEngine, queries: torch.Tensor, rows: torch.Tensor
                  ) -> torch.Tensor:
    """Stage 5: (g, r) float32 MaxSim on the stored vectors (-1 rows: -inf)."""
    g, r = rows.shape
    valid = rows >= 0
    flat = torch.where(valid, rows, 0).reshape(-1)
    if engine.segments.has("embeddings"):
        docs = torch.from_numpy(engine.segments.take("embeddings", flat.numpy(), pread=True)
                                ).float()
    else:
        docs = engine.decompress(flat)
    out = maxsim_pairs(queries, docs.view(g, r, *docs.shape[1:]))
    return out.masked_fill_(~valid, float("-inf"))


def _finish(rows: torch.Tensor, scores: torch.Tensor, keep: int) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    top = scores.topk(min(keep, scores.shape[1]), dim=1)
    picked = torch.gather(rows, 1, top.indices)
    return torch.where(torch.isfinite(top.values), picked, -1), top.values


def plaid_search(engine: PlaidEngine, queries: torch.Tensor, k: int,
                 deleted: torch.Tensor | None, params: dict[str, Any]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-``k`` (rows, exact scores) per query of a (Q, L, D) float32 batch."""
    n_docs, n_cent = len(engine.segments), engine.num_centroids
    stages = plaid_defaults(n_docs, n_cent, params.get("effort", 1.0),
                            engine.codec.nbits == 2 and engine.segments.has("embeddings"))
    stages.update({key: params[key] for key in stages if params.get(key)})
    candidates = max(stages["candidates"], k)
    ndocs = max(min(stages["ndocs"], candidates), k)
    rescore = max(min(stages["rescore"], ndocs), k)
    dtype = params.get("compute_dtype") or engine.compute_dtype
    if dtype == torch.int8 and not int8_matmul():
        dtype = torch.float32
    centroids = engine.centroids_in(dtype)
    ws = engine.workspace
    nq, tokens, _ = queries.shape
    group = int(max(1, min(16, _GROUP_ELEMENTS // max(1, n_cent * tokens))))
    probe = min(stages["nprobe"], n_cent)
    padded = padded_centroids(n_cent)
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, nq, group):
        q = queries[start:start + group]
        g = q.shape[0]
        # query-major (g, K', L): each query's stage-3/4 lookups stay in its own table
        centroid_t = ws.get("centroid_t", (g, padded, tokens))
        _centroid_scores(centroids, q, dtype, n_cent, centroid_t, ws)
        top_values, top_ids = _block_topk(centroid_t, min(probe + 1, n_cent))
        table = ws.get("table", (g, padded, tokens))  # float32: bfloat16 arithmetic is slow
        torch.sub(centroid_t, top_values[:, 0].view(g, 1, tokens), out=table)
        table.mul_(BETA / math.log(2)).exp2_()
        q_idx, rows = _candidates(engine, ws, top_values, top_ids, g, tokens, probe,
                                  candidates, deleted)
        if len(rows) == 0:
            results += [(np.empty(0, np.int64), np.empty(0, np.float32))] * g
            continue
        rows, ci = _soft_interaction(engine, table.view(g * padded, tokens), q_idx, rows, g,
                                     ndocs)
        rows = torch.where(torch.isfinite(ci), rows, -1)
        approx = _residual_scores(engine, ws, q, centroid_t.view(g * padded, tokens), rows)
        rows, _ = _finish(rows, approx, rescore)
        final = _exact_scores(engine, q, rows)
        rows, values = _finish(rows, final, k)
        for r, v in zip(rows, values):
            keep = r >= 0
            results.append((r[keep].numpy(), v[keep].numpy()))
    return results

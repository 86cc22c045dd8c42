"""Late-interaction (MaxSim) scoring: s(Q, D) = sum_i max_j Q_i . D_j.

The one implementation of MaxSim: the retriever, the demo, exact search, the plaid engine's
final re-scoring and the benchmarks all score through these functions.
"""

from __future__ import annotations

import torch

__all__ = ["maxsim", "maxsim_block", "maxsim_pairs"]


def maxsim_block(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """(Q, L, D) x (n, L', D) -> (Q, n): one matrix product, then the best document token per
    query token, summed.

    In the inputs' dtype (bfloat16 for exact search's pre-pass), summed in float32: a bfloat16
    sum over 32 tokens would lose 2 bits."""
    q, n = queries.shape[0], docs.shape[0]
    sims = docs.reshape(-1, docs.shape[-1]) @ queries.reshape(-1, queries.shape[-1]).T
    best = sims.view(n, docs.shape[1], q, queries.shape[1]).amax(dim=1)
    return best.float().sum(dim=-1).T


def maxsim_pairs(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """(g, L, D) queries x (g, r, L', D) documents, each query with its own r -> (g, r)."""
    g, r, tokens, dim = docs.shape
    sims = torch.bmm(docs.reshape(g, r * tokens, dim), queries.transpose(1, 2))
    return sims.view(g, r, tokens, -1).amax(dim=2).float().sum(dim=-1)


def maxsim(queries: torch.Tensor, documents: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Scores (Q, N) for queries (Q, k, dim) against documents (N, k', dim), in float32.

    Documents are processed in chunks so that the (Q, chunk, k, k') similarity block stays small.
    """
    if queries.dim() != 3 or documents.dim() != 3 or queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"expected (Q, k, dim) and (N, k, dim) with the same dim, got "
                         f"{tuple(queries.shape)} and {tuple(documents.shape)}")
    q = queries.float()
    out = torch.empty(q.shape[0], documents.shape[0], dtype=torch.float32, device=q.device)
    for start in range(0, documents.shape[0], chunk_size):
        d = documents[start:start + chunk_size].to(device=q.device, dtype=torch.float32)
        out[:, start:start + d.shape[0]] = maxsim_block(q, d)
    return out

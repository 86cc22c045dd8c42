"""Late-interaction (MaxSim) scoring: s(Q, D) = sum_i max_j Q_i . D_j."""

from __future__ import annotations

import torch

__all__ = ["maxsim"]


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
        sims = torch.einsum("qid,njd->qnij", q, d)
        out[:, start:start + d.shape[0]] = sims.amax(dim=-1).sum(dim=-1)
    return out

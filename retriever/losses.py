"""Contrastive training loss for ReT: InfoNCE over late-interaction (MaxSim) scores.

Queries are scored against every passage of the (global) batch plus optional hard negatives;
passages are scored against every query (the symmetric direction). When several batch items share
a passage or entity id, the targets are spread evenly over all matching candidates
(multi-positive). Across processes the features are gathered so every query sees every passage,
with gradients kept for the local part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["late_interaction_scores", "contrastive_loss", "ContrastiveOutput", "Temperature",
           "label_ids", "gather_with_grad"]


def late_interaction_scores(queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
    """(B, k, d) x (N, k', d) -> (B, N): sum over query vectors of the best passage vector."""
    sims = torch.einsum("bid,njd->bnij", queries, passages)
    return sims.amax(dim=-1).sum(dim=-1)


def label_ids(labels: Sequence[str]) -> torch.Tensor:
    """Stable int64 ids for string labels (passage / entity ids), identical in every process."""
    return torch.tensor([int.from_bytes(hashlib.sha1(str(label).encode()).digest()[:8], "little",
                                        signed=True) for label in labels], dtype=torch.long)


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j t_ij log softmax(logits)_ij, for rows with a positive."""
    rows = targets.sum(dim=1) > 0
    targets = targets[rows] / targets[rows].sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(logits[rows], dim=1)).sum(dim=1).mean()


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor
    query_to_passage: torch.Tensor
    passage_to_query: torch.Tensor | None
    accuracy: float          # share of queries whose best candidate is a positive


class Temperature(nn.Module):
    """Softmax temperature, fixed or learned (as a log inverse temperature, clamped)."""

    def __init__(self, value: float = 0.05, learnable: bool = False,
                 min_value: float = 0.005) -> None:
        super().__init__()
        if value <= 0:
            raise ValueError("temperature must be positive")
        log_scale = torch.tensor(-float(torch.log(torch.tensor(value))))
        self.log_scale = nn.Parameter(log_scale, requires_grad=learnable)
        self.max_log_scale = float(-torch.log(torch.tensor(min_value)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    @property
    def value(self) -> float:
        return float(1.0 / self().detach())


def contrastive_loss(queries: torch.Tensor, passages: torch.Tensor,
                     query_labels: torch.Tensor, passage_labels: torch.Tensor,
                     inverse_temperature: torch.Tensor | float = 20.0,
                     hard_negatives: torch.Tensor | None = None,
                     hard_negative_labels: torch.Tensor | None = None,
                     symmetric: bool = True) -> ContrastiveOutput:
    """InfoNCE over MaxSim scores.

    queries (B, k, d) and passages (B, k, d) are L2-normalised features; labels (B,) say which
    items are the same passage/entity (a query's positives are the candidates with its label).
    Hard negatives (M, k, d) join the candidates of the query -> passage direction only; a hard
    negative with a query's label counts as positive for it.
    """
    scale = inverse_temperature
    candidates, candidate_labels = passages, passage_labels
    if hard_negatives is not None and len(hard_negatives):
        candidates = torch.cat([passages, hard_negatives])
        candidate_labels = torch.cat([passage_labels, hard_negative_labels])
    scores = late_interaction_scores(queries, candidates)                    # (B, N+M)
    targets = (query_labels[:, None] == candidate_labels[None, :]).float()
    q2p = _soft_cross_entropy(scores * scale, targets)
    p2q = None
    loss = q2p
    if symmetric:
        in_batch = scores[:, : len(passages)].T                              # (N, B)
        p2q = _soft_cross_entropy(in_batch * scale, targets[:, : len(passages)].T)
        loss = (q2p + p2q) / 2
    with torch.no_grad():
        best = scores.argmax(dim=1)
        accuracy = float(targets[torch.arange(len(best)), best].mean()) if len(best) else 0.0
    return ContrastiveOutput(loss, q2p, p2q, accuracy)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process (dim 0); only the local slice keeps its gradient,
    so each process back-propagates through its own features. A no-op without distribution."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts)

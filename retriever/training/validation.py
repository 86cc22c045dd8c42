"""Validation during training: Recall@K of held-out queries, ranked with MaxSim in memory."""

from __future__ import annotations

from collections.abc import Sequence

from ..modeling_retriever import ReTRetriever
from ..scoring import maxsim
from .data import PassageLookup, TrainQuery

__all__ = ["recall_at_k"]


def recall_at_k(model: ReTRetriever, queries: Sequence[TrainQuery], passages: PassageLookup,
                passage_ids: Sequence[str] | None = None, ks: Sequence[int] = (1, 5, 10),
                batch_size: int = 32) -> dict[str, float]:
    """Score each query against ``passage_ids`` (default: every positive of the queries) with
    exact MaxSim (:func:`retriever.scoring.maxsim`, what an exact index computes, without
    writing one), and report the share of queries with a positive in the top K."""
    ids = list(passage_ids) if passage_ids else sorted({p for q in queries for p in q.positives})
    docs = [passages.get(pid) for pid in ids]
    doc_features = model.encode_documents([d.text for d in docs], [d.image for d in docs],
                                          batch_size=batch_size, show_progress=False)
    query_features = model.encode_queries([q.text for q in queries], [q.image for q in queries],
                                          batch_size=batch_size, show_progress=False)
    top = min(max(ks), len(ids))
    ranked = maxsim(query_features, doc_features).topk(top, dim=1).indices.tolist() \
        if queries and ids else [[] for _ in queries]
    out = {}
    for k in ks:
        hits = [any(ids[j] in q.positives for j in found[:k]) for q, found in zip(queries, ranked)]
        out[f"recall@{k}"] = sum(hits) / max(1, len(hits))
    return out

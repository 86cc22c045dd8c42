"""Validation during training: Recall@K of held-out queries, searched with our own index."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from ..index import MultiVectorIndex
from ..modeling_retriever import ReTRetriever
from .data import PassageLookup, TrainQuery

__all__ = ["recall_at_k"]


def recall_at_k(model: ReTRetriever, queries: Sequence[TrainQuery], passages: PassageLookup,
                passage_ids: Sequence[str] | None = None, ks: Sequence[int] = (1, 5, 10),
                batch_size: int = 32) -> dict[str, float]:
    """Index ``passage_ids`` (default: every positive of the queries) exactly, search each query,
    and report the share of queries with a positive in the top K."""
    ids = list(passage_ids) if passage_ids else sorted({p for q in queries for p in q.positives})
    docs = [passages.get(pid) for pid in ids]
    doc_features = model.encode_documents([d.text for d in docs], [d.image for d in docs],
                                          batch_size=batch_size, show_progress=False)
    query_features = model.encode_queries([q.text for q in queries], [q.image for q in queries],
                                          batch_size=batch_size, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        index = MultiVectorIndex.build(tmp, ids, doc_features.numpy(), method="exact",
                                       show_progress=False)
        results = index.search(query_features.numpy(), k=min(max(ks), len(ids)))
    out = {}
    for k in ks:
        hits = [any(h.doc_id in set(q.positives) for h in found[:k])
                for q, found in zip(queries, results)]
        out[f"recall@{k}"] = sum(hits) / max(1, len(hits))
    return out

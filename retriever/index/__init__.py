"""Multi-vector (late-interaction) index: exact brute force and a compressed PLAID-style engine.

    from retriever.index import MultiVectorIndex
    index = MultiVectorIndex.build("my-index", doc_ids, embeddings, method="plaid", nbits=4)
    hits = index.search(queries, k=10)          # list[list[Hit(doc_id, score)]]
"""

from .multivector import AddReport, Hit, IndexFormatError, MultiVectorIndex

__all__ = ["AddReport", "Hit", "IndexFormatError", "MultiVectorIndex"]

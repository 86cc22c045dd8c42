"""Multi-vector (late-interaction) index: exact brute force and a compressed PLAID-style engine.

    from retriever.index import MultiVectorIndex
    index = MultiVectorIndex.build("my-index", doc_ids, embeddings, method="plaid", nbits=4)
    hits = index.search(queries, k=10)          # list[list[Hit(doc_id, score)]]
    index.info.retriever, index.info.rows       # the manifest, typed (IndexManifest)
"""

from .engine import IndexEngine
from .manifest import IndexManifest
from .multivector import AddReport, Hit, IndexFormatError, MultiVectorIndex
from .params import ExactBuildParams, PlaidBuildParams

__all__ = ["AddReport", "ExactBuildParams", "Hit", "IndexEngine", "IndexFormatError",
           "IndexManifest", "MultiVectorIndex", "PlaidBuildParams"]

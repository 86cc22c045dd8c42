"""Building a plaid index: the posting lists made from the codes."""

import numpy as np
import pytest

from retriever.index.plaid_build import code_dtype, postings_for


@pytest.mark.parametrize("num_centroids", [12, 70_000])  # uint16 and int32 codes
def test_posting_lists_hold_each_document_once_in_order(num_centroids):
    rng = np.random.default_rng(num_centroids)
    codes = rng.integers(0, num_centroids, size=(400, 9)).astype(code_dtype(num_centroids))
    codes[:, 4] = codes[:, 2]  # a document using a centroid twice is listed once
    offsets, docs = postings_for(codes, num_centroids)
    expected: dict[int, list[int]] = {}
    for doc, row in enumerate(codes.tolist()):
        for centroid in sorted(set(row)):
            expected.setdefault(centroid, []).append(doc)
    assert offsets.shape == (num_centroids + 1,) and offsets[0] == 0 and docs.dtype == np.int32
    for centroid in range(num_centroids):
        got = docs[offsets[centroid]:offsets[centroid + 1]].tolist()
        assert got == expected.get(centroid, [])


def test_no_documents_no_postings():
    offsets, docs = postings_for(np.zeros((0, 4), dtype=np.uint16), 5)
    assert offsets.tolist() == [0] * 6 and len(docs) == 0

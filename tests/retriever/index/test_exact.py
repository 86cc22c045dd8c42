"""Exact search: the bfloat16 pre-pass never changes the result, and its error bound holds."""

import numpy as np
import pytest
import torch

from retriever.index import MultiVectorIndex
from retriever.index.exact import bf16_bound, exact_search, maxsim_block
from tests.helpers import clustered_embeddings


def _search(docs, queries, k, use_bf16, deleted=None, chunk=64):
    def blocks(rows):
        return ((s, docs[s:s + rows]) for s in range(0, len(docs), rows))

    norm = float(np.linalg.norm(docs.astype(np.float32), axis=-1).max())
    return exact_search(torch.from_numpy(queries), blocks, lambda rows: docs[rows], k,
                        deleted, norm, chunk, use_bf16=use_bf16)


def test_bf16_prepass_returns_the_float32_top_k():
    docs, queries, _ = clustered_embeddings(700, 12, seed=3)
    # near duplicates make near ties, where a bfloat16 ranking alone would go wrong
    docs[350:400] = docs[300:350] + np.float16(1e-3)
    plain = _search(docs, queries, 10, use_bf16=False)
    fast = _search(docs, queries, 10, use_bf16=True)
    full = maxsim_block(torch.from_numpy(queries), torch.from_numpy(docs.astype(np.float32)))
    for (rows, scores), (rows32, scores32), expected in zip(fast, plain, full):
        assert np.array_equal(rows, rows32)
        assert np.allclose(scores, scores32, atol=1e-5)
        assert np.allclose(scores, expected.topk(10).values.numpy(), atol=1e-4)


def test_bf16_error_stays_within_the_bound_for_any_norms():
    rng = np.random.default_rng(0)
    docs = (rng.standard_normal((300, 8, 16)) * rng.uniform(0.1, 3, (300, 8, 1))).astype(np.float16)
    queries = torch.from_numpy((rng.standard_normal((5, 6, 16)) * 2).astype(np.float32))
    d32 = torch.from_numpy(docs.astype(np.float32))
    exact = maxsim_block(queries, d32)
    approx = maxsim_block(queries.bfloat16(), d32.bfloat16())
    bound = bf16_bound(queries, float(d32.norm(dim=-1).max()))
    assert torch.all((approx - exact).abs() <= bound[:, None])
    assert float((approx - exact).abs().max()) > 0  # the pre-pass is approximate indeed


def test_deleted_rows_and_fewer_documents_than_k():
    docs, queries, _ = clustered_embeddings(40, 3, seed=1)
    deleted = torch.zeros(40, dtype=torch.bool)
    deleted[::2] = True
    for use_bf16 in (False, True):
        results = _search(docs, queries, 30, use_bf16, deleted=deleted, chunk=7)
        for rows, scores in results:
            assert len(rows) == 20 and not np.any(rows % 2 == 0)
            assert np.all(np.diff(scores) <= 0)


def test_exact_index_records_and_extends_its_norm_bound(tmp_path):
    docs, queries, _ = clustered_embeddings(100, 4, seed=2)
    index = MultiVectorIndex.build(tmp_path / "ix", list(range(100)), docs, method="exact")
    assert index.manifest["params"]["max_norm"] == pytest.approx(1.0, abs=2e-3)
    louder = (docs[:10].astype(np.float32) * 3).astype(np.float16)
    index.add(list(range(100, 110)), louder)
    index.save()
    reloaded = MultiVectorIndex.load(index.path)
    assert reloaded.manifest["params"]["max_norm"] == pytest.approx(3.0, abs=6e-3)
    everything = np.concatenate([docs, louder]).astype(np.float32)
    expected = maxsim_block(torch.from_numpy(queries), torch.from_numpy(everything))
    for hits, row in zip(reloaded.search(queries, k=5), expected):
        assert [h.doc_id for h in hits] == row.topk(5).indices.tolist()

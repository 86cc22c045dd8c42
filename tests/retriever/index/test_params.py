"""Index parameters: build parameters (typed, checked), search validation, the effort knob,
adaptive defaults, batched search."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from retriever.index import MultiVectorIndex
from retriever.index.params import check_search_params, plaid_defaults
from tests.helpers import clustered_embeddings


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    docs, queries, _ = clustered_embeddings(800, 24, seed=5)
    ix = MultiVectorIndex.build(tmp_path_factory.mktemp("ix"), list(range(800)), docs,
                                method="plaid", num_centroids=128)
    return ix, queries


def test_unknown_and_bad_parameters_are_refused(index):
    ix, queries = index
    with pytest.raises(TypeError, match=r"unknown search parameter\(s\): \['nprobes'\]"):
        ix.search(queries[:1], k=3, nprobes=4)
    for bad in ({"effort": 0}, {"effort": -1.0}, {"effort": float("nan")}, {"effort": 100},
                {"nprobe": 0}, {"ndocs": 2.5}, {"rescore": True}, {"compute_dtype": "float16"}):
        with pytest.raises(ValueError):
            ix.search(queries[:1], k=3, **bad)
    assert check_search_params({"compute_dtype": "float32", "effort": 2}) == {
        "compute_dtype": torch.float32, "effort": 2.0}


def test_defaults_grow_with_the_collection_and_with_effort():
    small, large = plaid_defaults(100_000, 16384), plaid_defaults(1_000_000, 65536)
    for key in ("nprobe", "candidates", "ndocs"):
        assert large[key] > small[key]
    low, high = plaid_defaults(100_000, 16384, 0.5), plaid_defaults(100_000, 16384, 2.0)
    for key in small:
        assert low[key] <= small[key] <= high[key]
    assert high["ndocs"] > small["ndocs"] > low["ndocs"]
    coarse = plaid_defaults(100_000, 16384, coarse_residuals=True)
    assert coarse["rescore"] == 4 * small["rescore"]
    assert {k: v for k, v in coarse.items() if k != "rescore"} == \
        {k: v for k, v in small.items() if k != "rescore"}


def test_more_effort_finds_at_least_as_much(index):
    ix, queries = index
    exact = MultiVectorIndex.build(ix.path.parent / "exact", list(range(800)),
                                   np.load(ix.data_path / "embeddings-00000.npy"), method="exact")
    truth = [{h.doc_id for h in hits} for hits in exact.search(queries, k=10)]

    def recall(**params):
        found = ix.search(queries, k=10, **params)
        return np.mean([len(t & {h.doc_id for h in f}) / 10 for t, f in zip(truth, found)])

    fast, default, slow = recall(effort=0.25), recall(), recall(effort=4.0)
    assert fast <= default + 1e-9 <= slow + 2e-9
    assert slow >= 0.97


def test_a_batch_finds_what_single_queries_find(index):
    ix, queries = index
    batch = ix.search(queries, k=7)
    single = [ix.search(queries[i:i + 1], k=7)[0] for i in range(len(queries))]
    assert [[h.doc_id for h in r] for r in batch] == [[h.doc_id for h in r] for r in single]
    for b, s in zip(batch, single):
        assert np.allclose([h.score for h in b], [h.score for h in s], atol=1e-5)


def test_config_refuses_unknown_search_keys():
    from rag_vqa.config import ConfigError, load_config

    assert load_config({"index": {"search": {"effort": 2}}}).index.search == {"effort": 2}
    with pytest.raises(ConfigError, match="nprobes"):
        load_config({"index": {"search": {"nprobes": 3}}})
    with pytest.raises(ConfigError, match="effort"):
        load_config({"index": {"search": {"effort": 0}}})


def test_effort_flag_reaches_the_search_config_and_is_checked_at_parse_time(capsys):
    import argparse

    from rag_vqa.cli_pipeline import _overrides, add_pipeline_options

    parser = argparse.ArgumentParser()
    add_pipeline_options(parser)
    assert _overrides(parser.parse_args(["--effort", "2"]))["index"]["search"] == {"effort": 2.0}
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--effort", "0"])
    assert stop.value.code == 2 and "effort" in capsys.readouterr().err


def test_build_parameters_are_typed_with_their_defaults_in_one_place():
    from retriever.index.params import PlaidBuildParams, check_build_params

    filled = check_build_params("plaid", {"nbits": 2})
    assert filled == {**asdict(PlaidBuildParams()), "nbits": 2}
    assert check_build_params("exact", {}) == {"chunk_size": 4096}
    # a misspelling is refused with the closest name, never silently ignored
    with pytest.raises(TypeError, match=r"'num_centroid' \(did you mean 'num_centroids'\?\)"):
        check_build_params("plaid", {"num_centroid": 64})
    with pytest.raises(ValueError, match="nbits must be 2, 4 or 8"):
        check_build_params("plaid", {"nbits": 3})
    with pytest.raises(TypeError, match="seed must be an integer"):
        check_build_params("plaid", {"seed": "0"})
    with pytest.raises(ValueError, match="positive integer"):
        check_build_params("exact", {"chunk_size": 0})
    with pytest.raises(ValueError, match="only a plaid index has centroids"):
        check_build_params("exact", {"centroids": "elsewhere"})
    # a setting of the other method does not apply: dropped, the build goes on
    assert check_build_params("exact", {"num_centroids": 16}) == {"chunk_size": 4096}


def test_a_misspelled_build_setting_is_refused_before_anything_is_written(tmp_path):
    emb = np.zeros((4, 2, 8), dtype=np.float32)
    with pytest.raises(TypeError, match="keep_float_16"):
        MultiVectorIndex.build(tmp_path / "ix", list(range(4)), emb, method="plaid",
                               keep_float_16=False)
    assert not (tmp_path / "ix").exists()


def test_block_topk_is_the_exact_topk():
    from retriever.index.plaid_search import BLOCK, _block_topk

    gen = torch.Generator().manual_seed(3)
    k, padded, tokens = 1000, 1024, 5
    scores = torch.full((2, padded, tokens), float("-inf"))
    scores[:, :k] = torch.randn((2, k, tokens), generator=gen)
    values, ids = _block_topk(scores, 17)
    ref = scores.transpose(1, 2).reshape(2 * tokens, padded).topk(17, dim=1)
    assert padded % BLOCK == 0
    assert torch.equal(values, ref.values)
    assert torch.equal(ids, ref.indices)  # random scores: no ties


def test_int8_centroid_scores_rank_like_float32(index):
    """Stage 1 in int8 (the default where the CPU multiplies int8) stays within ~1e-2 of the
    float32 scores and finds the same documents."""
    from retriever.index.plaid_search import (
        Workspace,
        _centroid_scores,
        int8_matmul,
        padded_centroids,
    )

    ix, queries = index
    if not int8_matmul():
        pytest.skip("no int8 matrix product on this CPU")
    engine = ix.engine
    n = engine.num_centroids
    padded = padded_centroids(n)
    q = torch.as_tensor(np.asarray(queries[:3]), dtype=torch.float32)
    out8, out32 = (torch.empty((3, padded, q.shape[1])) for _ in range(2))
    ws = Workspace()
    _centroid_scores(engine.centroids_in(torch.int8), q, torch.int8, n, out8, ws)
    _centroid_scores(engine.centroids_in(torch.float32), q, torch.float32, n, out32, ws)
    assert torch.isinf(out8[:, n:]).all() and torch.isinf(out32[:, n:]).all()
    assert (out8[:, :n] - out32[:, :n]).abs().max() < 1e-2
    found8 = ix.search(queries, k=10, compute_dtype="int8")
    found32 = ix.search(queries, k=10, compute_dtype="float32")
    same = np.mean([len({h.doc_id for h in a} & {h.doc_id for h in b}) / 10
                    for a, b in zip(found8, found32)])
    assert same >= 0.98

"""Search parameters: validation, the effort knob, adaptive defaults, batched search."""

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
                {"nprobe": 0}, {"ndocs": 2.5}, {"rescore": True}, {"compute_dtype": "int8"}):
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

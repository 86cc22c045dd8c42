"""Plaid search internals: the shared work buffers, stage 4's scores, populated maps."""

import sys

import numpy as np
import pytest
import torch

from retriever.index import MultiVectorIndex
from retriever.index.plaid_search import (
    Workspace,
    _centroid_scores,
    _residual_scores,
    padded_centroids,
)
from retriever.index.storage import load_npy, populate
from retriever.scoring import maxsim_pairs
from tests.helpers import clustered_embeddings


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    docs, queries, _ = clustered_embeddings(600, 24, seed=11)
    ix = MultiVectorIndex.build(tmp_path_factory.mktemp("ix"), list(range(600)), docs,
                                method="plaid", num_centroids=96)
    return ix, torch.as_tensor(np.asarray(queries[:3]), dtype=torch.float32)


def test_one_name_is_one_block_of_memory_whatever_the_type():
    ws = Workspace()
    floats = ws.get("table", (4, 8))
    ints = ws.get("table", (32,), torch.int32)
    assert floats.data_ptr() == ints.data_ptr() and ints.dtype == torch.int32
    ints.fill_(7)
    assert torch.equal(floats.view(torch.int32).reshape(-1), ints)  # the same bytes
    small = ws.get("table", (2, 2), torch.uint8)
    assert small.data_ptr() == floats.data_ptr()  # a smaller request reuses the block
    grown = ws.get("table", (64, 8))
    assert grown.shape == (64, 8) and grown.numel() * 4 <= ws.buffers["table"].numel()
    assert ws.get("other", (3,)).data_ptr() != grown.data_ptr()


def test_stage_4_is_maxsim_on_the_decompressed_vectors_less_one_constant_per_query(index):
    """Stage 4 leaves out q . (lo + step / 2) per query token: the same for every document,
    so its ranking is that of MaxSim on the decompressed vectors."""
    ix, q = index
    engine = ix.engine
    g, tokens, _ = q.shape
    padded = padded_centroids(engine.num_centroids)
    centroid_t = torch.empty((g, padded, tokens))
    ws = Workspace()
    _centroid_scores(engine.centroids_in(torch.float32), q, torch.float32,
                     engine.num_centroids, centroid_t, ws)
    rows = torch.stack([torch.randperm(600, generator=torch.Generator().manual_seed(i))[:40]
                        for i in range(g)])
    rows[1, -5:] = -1  # padding rows score -inf
    approx = _residual_scores(engine, ws, q, centroid_t.view(g * padded, tokens), rows)
    assert torch.isinf(approx[1, -5:]).all()
    valid = rows.clamp_min(0)
    decompressed = engine.decompress(valid.reshape(-1)).view(g, 40, tokens, -1)
    reference = maxsim_pairs(q, decompressed)
    offsets, _ = engine.codec.query_terms(q)
    shifted = approx + offsets.sum(dim=1, keepdim=True)
    keep = rows >= 0
    # int8 query weights: ~1e-3 of a cosine per token
    assert (shifted[keep] - reference[keep]).abs().max() < 0.05
    for i in range(g):
        mine = torch.argsort(approx[i][keep[i]], descending=True)[:10]
        theirs = torch.argsort(reference[i][keep[i]], descending=True)[:10]
        assert len(set(mine.tolist()) & set(theirs.tolist())) >= 8


def _kernel_at_least(major: int, minor: int) -> bool:
    import platform

    parts = platform.release().split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def test_populate_maps_an_array_in_place_and_declines_what_it_cannot(tmp_path):
    array = np.arange(300_000, dtype=np.int32).reshape(1000, 300)
    np.save(tmp_path / "a.npy", array)
    mapped = load_npy(tmp_path / "a.npy")
    expected = sys.platform == "linux" and _kernel_at_least(5, 14)
    assert populate([mapped, mapped.view(np.ndarray)]) is expected  # a map, a view of one
    assert np.array_equal(mapped, array)  # nothing read differently
    assert populate([mapped], share=0.0) is False  # larger than their share of memory
    assert populate([mapped, array]) is False  # one of them is not a map

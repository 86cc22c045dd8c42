import numpy as np

from retriever.index.centroids import CentroidAssigner, default_num_centroids, train_centroids
from tests.helpers import clustered_embeddings


def test_default_number_of_centroids_follows_plaid():
    assert default_num_centroids(3_200_000) == 16384   # 16 * sqrt(3.2M) = 28,622 -> 2^14
    assert default_num_centroids(32_000_000) == 65536
    assert default_num_centroids(10) == 64


def test_two_level_assignment_finds_the_nearest_centroid_almost_always():
    docs, _, _ = clustered_embeddings(400, 1, seed=3)
    vectors = docs.reshape(-1, 128).astype(np.float32)
    centroids, coarse = train_centroids(vectors, 256, seed=0)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    assert 200 <= len(centroids) <= 300
    ids = CentroidAssigner(centroids, coarse, nprobe=4).assign(vectors)
    brute = (vectors @ centroids.T).argmax(axis=1)
    best = (vectors @ centroids.T).max(axis=1)
    got = (vectors * centroids[ids]).sum(axis=1)
    assert np.mean(ids == brute) > 0.95
    assert np.all(got <= best + 1e-5) and np.mean(best - got) < 0.01


def test_centroid_shares_never_exceed_what_was_asked():
    import torch

    from retriever.index.centroids import _apportion

    rng = np.random.default_rng(0)
    for total in (1000, 65536):
        sizes = torch.from_numpy(rng.integers(0, 5000, size=256).astype(np.float64))
        shares = _apportion(sizes, total)
        assert int(shares.sum()) == total
        assert bool((shares[sizes > 0] >= 1).all()) and bool((shares[sizes == 0] == 0).all())
        # proportional: each share within one of its exact quota
        quota = sizes / sizes.sum() * total
        assert float((shares - quota).abs().max()) <= 1.0 + 1e-9
    tiny = _apportion(torch.tensor([1.0] * 10 + [1000.0]), 12)  # the minimum of one binds
    assert int(tiny.sum()) == 12 and bool((tiny >= 1).all())

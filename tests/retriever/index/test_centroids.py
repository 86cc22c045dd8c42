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

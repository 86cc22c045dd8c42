"""Token-level coarse quantisation: spherical k-means centroids trained with faiss, two levels
deep so that training and assigning millions of vectors stays fast on a CPU.

A first k-means finds ~sqrt(K) coarse centres; each coarse cell then gets its own k-means with a
share of the K fine centroids proportional to its size. Assignment probes the few best coarse
cells (a faiss IVF index whose lists hold the fine centroids), so each vector is compared with a
few hundred centroids instead of all K.
"""

from __future__ import annotations

import logging
import math

import faiss
import numpy as np

__all__ = ["default_num_centroids", "train_centroids", "CentroidAssigner"]

logger = logging.getLogger(__name__)


def default_num_centroids(num_vectors: int) -> int:
    """PLAID's rule: the power of two below 16 * sqrt(#vectors), within [64, 65536]."""
    target = 16 * math.sqrt(max(num_vectors, 1))
    return int(min(65536, max(64, 2 ** math.floor(math.log2(target)))))


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _kmeans(points: np.ndarray, k: int, seed: int, niter: int) -> np.ndarray:
    if k <= 1 or len(points) <= k:
        return _normalise(points[: max(k, 1)] if len(points) else np.zeros((1, points.shape[1])))
    km = faiss.Kmeans(points.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    km.train(points)
    return _normalise(km.centroids)


def train_centroids(sample: np.ndarray, num_centroids: int, seed: int = 0,
                    niter: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Fine centroids (K', dim) and coarse centres (K1, dim), both unit-norm float32.

    K' can be slightly below ``num_centroids`` when a coarse cell has fewer points than its share.
    """
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k1 = int(min(len(sample), 2 ** round(math.log2(math.sqrt(num_centroids)))))
    coarse = _kmeans(sample, k1, seed, niter)
    index = faiss.IndexFlatIP(sample.shape[1])
    index.add(coarse)
    _, cell = index.search(sample, 1)
    cell = cell[:, 0]
    sizes = np.bincount(cell, minlength=len(coarse))
    shares = np.maximum(1, np.round(sizes / max(sizes.sum(), 1) * num_centroids)).astype(int)
    fine = []
    for j in range(len(coarse)):
        points = sample[cell == j]
        if len(points) == 0:
            continue
        fine.append(_kmeans(points, int(min(shares[j], len(points))), seed + 1 + j, niter))
    return np.concatenate(fine), coarse


class CentroidAssigner:
    """Nearest fine centroid (by inner product) for many vectors, probing ``nprobe`` coarse cells."""

    def __init__(self, centroids: np.ndarray, coarse: np.ndarray, nprobe: int = 4) -> None:
        dim = centroids.shape[1]
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.ascontiguousarray(coarse, dtype=np.float32))
        self._index = faiss.IndexIVFFlat(quantizer, dim, len(coarse), faiss.METRIC_INNER_PRODUCT)
        self._index.is_trained = True
        self._index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        self._index.nprobe = min(nprobe, len(coarse))
        self._quantizer = quantizer  # keep alive: faiss does not own it
        self._flat = faiss.IndexFlatIP(dim)
        self._flat.add(np.ascontiguousarray(centroids, dtype=np.float32))

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) -> (n,) int64 centroid ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _, ids = self._index.search(vectors, 1)
        ids = ids[:, 0]
        lost = np.flatnonzero(ids < 0)  # probed cells were empty: fall back to all centroids
        if len(lost):
            ids[lost] = self._flat.search(vectors[lost], 1)[1][:, 0]
        return ids

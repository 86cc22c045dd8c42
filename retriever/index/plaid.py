"""A PLAID-style compressed multi-vector index (numpy, torch and faiss only).

Storage per document: the centroid id of each of its 32 vectors, each residual quantised to
``nbits`` per dimension, and doc-level posting lists (centroid -> documents that have a vector
there); optionally the float16 vectors on disk for exact re-scoring of the final candidates.

Search, per query:
  1. S = Q . C^T, the score of every query token against every centroid.
  2. Candidates: for each query token, its ``nprobe`` best centroids; a document's approximate
     score sums, over query tokens, the scores of those centroids it holds (the (nprobe+1)-th
     best score stands in for tokens it holds none of). Top ``candidates``.
  3. Centroid interaction on those: sum_i max_j S[i, code(d_j)] over all of the document's
     centroid codes. Top ``ndocs``.
  4. Residual scoring: MaxSim on the decompressed vectors, as one matrix product on the codes.
  5. Exact MaxSim on the float16 vectors for the best ``rescore`` (when kept), else the
     decompressed scores; top ``k``.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .centroids import CentroidAssigner, default_num_centroids, train_centroids
from .codec import ResidualCodec, unpack_codes
from .exact import maxsim_block
from .segments import Segments, iter_chunks
from .storage import IndexFormatError, NpyWriter, load_npy, write_npy

__all__ = ["PlaidEngine", "DEFAULT_SEARCH", "default_search_params"]

logger = logging.getLogger(__name__)

DEFAULT_SEARCH = {"nprobe": 8, "candidates": 2048, "ndocs": 512, "rescore": 64}


def default_search_params(num_docs: int, num_centroids: int) -> dict[str, int]:
    """Search effort that grows with the collection: at 100K documents these defaults keep
    recall@10 against exact search near 0.99 in ~7 ms; at 1M (65,536 centroids) near 0.9."""
    return {"nprobe": DEFAULT_SEARCH["nprobe"] * (2 if num_centroids > 16384 else 1),
            "candidates": int(min(16384, max(DEFAULT_SEARCH["candidates"], num_docs // 128))),
            "ndocs": int(min(4096, max(DEFAULT_SEARCH["ndocs"], num_docs // 512))),
            "rescore": DEFAULT_SEARCH["rescore"]}


@lru_cache(maxsize=1)
def _cpu_has_fast_bf16() -> bool:
    """bfloat16 matrix products beat float32 only with native support (AVX512-BF16 / AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _value_range(array: np.ndarray, chunk: int = 1 << 16) -> tuple[int, int]:
    """(min, max) of a possibly memory-mapped array, a block of rows at a time."""
    if array.size == 0:
        return 0, 0
    low, high = None, None
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk])
        low = int(block.min()) if low is None else min(low, int(block.min()))
        high = int(block.max()) if high is None else max(high, int(block.max()))
    return low, high


def _code_dtype(num_centroids: int) -> np.dtype:
    return np.dtype(np.uint16) if num_centroids <= 65536 else np.dtype(np.int32)


class PlaidEngine:
    method = "plaid"

    def __init__(self, centroids: np.ndarray, coarse: np.ndarray, codec: ResidualCodec,
                 segments: Segments, compute_dtype: torch.dtype | None = None) -> None:
        self.centroids = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
        self.coarse = coarse
        self.codec = codec
        self.segments = segments
        self.compute_dtype = compute_dtype or (torch.bfloat16 if _cpu_has_fast_bf16()
                                               else torch.float32)
        self._centroids_c = self.centroids.to(self.compute_dtype)
        self._postings: list[tuple[torch.Tensor, torch.Tensor]] = []
        for seg in segments.arrays:
            self._postings.append(self._load_postings(seg))
        self._assigner: CentroidAssigner | None = None

    @staticmethod
    def _load_postings(seg: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(np.asarray(seg["postings_offsets"], dtype=np.int64)),
                torch.from_numpy(np.asarray(seg["postings_docs"], dtype=np.int64)))

    @property
    def num_centroids(self) -> int:
        return int(self.centroids.shape[0])

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, folder: Path, embeddings: Any, params: dict, progress
              ) -> tuple[dict, dict, dict]:
        n, tokens, dim = embeddings.shape
        nbits = int(params.get("nbits", 4))
        seed = int(params.get("seed", 0))
        num_centroids = int(params.get("num_centroids") or default_num_centroids(n * tokens))
        rng = np.random.default_rng(seed)
        sample_size = min(n * tokens, int(params.get("sample_size") or max(32 * num_centroids,
                                                                           65536)))
        docs = np.sort(rng.choice(n, size=min(n, -(-sample_size // tokens)), replace=False))
        sample = np.asarray(embeddings[docs], dtype=np.float32).reshape(-1, dim)
        logger.info("training %d centroids on %d vectors", num_centroids, len(sample))
        centroids, coarse = train_centroids(sample, num_centroids, seed=seed)
        assign_nprobe = int(params.get("assign_nprobe", 4))
        assigner = CentroidAssigner(centroids, coarse, nprobe=assign_nprobe)
        fit = sample[: min(len(sample), 262144)]
        codec = ResidualCodec.fit(fit - centroids[assigner.assign(fit)], nbits)
        files = {"centroids.npy": write_npy(folder, "centroids.npy", centroids),
                 "coarse.npy": write_npy(folder, "coarse.npy", coarse),
                 "codec_lo.npy": write_npy(folder, "codec_lo.npy", codec.lo),
                 "codec_step.npy": write_npy(folder, "codec_step.npy", codec.step)}
        engine = cls(centroids, coarse, codec, Segments())
        engine._assigner = assigner
        seg_files, stats = engine._write_segment(folder, 0, embeddings, params, progress)
        files.update(seg_files)
        used = {"nbits": nbits, "num_centroids": int(len(centroids)), "seed": seed,
                "sample_size": int(len(sample)), "assign_nprobe": assign_nprobe,
                "keep_float16": bool(params.get("keep_float16", True))}
        return files, used, stats

    def _write_segment(self, folder: Path, seg: int, embeddings: Any, params: dict, progress
                       ) -> tuple[dict, dict]:
        """Assign, quantise and write one segment; returns its files and residual statistics."""
        n, tokens, dim = embeddings.shape
        if self._assigner is None:
            # documents added later are assigned the way the build assigned its own
            self._assigner = CentroidAssigner(self.centroids.numpy(), self.coarse,
                                              nprobe=int(params.get("assign_nprobe", 4)))
        chunk = int(params.get("chunk_size", 4096))
        keep16 = bool(params.get("keep_float16", True))
        names = {"codes": f"codes-{seg:05d}.npy", "residuals": f"residuals-{seg:05d}.npy",
                 "embeddings": f"embeddings-{seg:05d}.npy"}
        writers = {"codes": NpyWriter(folder, names["codes"], (n, tokens),
                                      _code_dtype(self.num_centroids)),
                   "residuals": NpyWriter(folder, names["residuals"],
                                          (n, tokens, self.codec.bytes_per_vector), np.uint8)}
        if keep16:
            writers["embeddings"] = NpyWriter(folder, names["embeddings"], (n, tokens, dim),
                                              np.float16)
        centroids = self.centroids.numpy()
        norm_sum, clipped, values = 0.0, 0, 0
        try:
            for start, stop in iter_chunks(n, chunk):
                block = np.asarray(embeddings[start:stop], dtype=np.float32)
                flat = block.reshape(-1, dim)
                codes = self._assigner.assign(flat)
                residual = flat - centroids[codes]
                norm_sum += float(np.linalg.norm(residual, axis=1).sum())
                outside = (residual < self.codec.lo) | (residual > self.codec.lo + self.codec.step
                                                        * (1 << self.codec.nbits))
                clipped += int(outside.sum())
                values += residual.size
                writers["codes"].array[start:stop] = codes.reshape(-1, tokens)
                writers["residuals"].array[start:stop] = self.codec.encode(residual).reshape(
                    stop - start, tokens, -1)
                if keep16:
                    writers["embeddings"].array[start:stop] = block.astype(np.float16)
                progress(stop - start)
            files = {names[key]: w.close() for key, w in writers.items()}
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        codes = load_npy(folder / names["codes"])
        offsets, docs = self._postings_for(codes)
        files[f"postings-{seg:05d}.offsets.npy"] = write_npy(
            folder, f"postings-{seg:05d}.offsets.npy", offsets)
        files[f"postings-{seg:05d}.docs.npy"] = write_npy(folder, f"postings-{seg:05d}.docs.npy",
                                                          docs)
        stats = {"residual_norm_mean": norm_sum / max(n * tokens, 1),
                 "clip_fraction": clipped / max(values, 1)}
        self.segments.append(self._open_segment(folder, seg, keep16), n)
        self._postings.append(self._load_postings(self.segments.arrays[-1]))
        return files, stats

    def _postings_for(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Doc-level posting lists: for each centroid, the (sorted, unique) documents using it."""
        n, tokens = codes.shape
        keys = np.asarray(codes, dtype=np.int64).reshape(-1) * n + np.repeat(
            np.arange(n, dtype=np.int64), tokens)
        keys = np.unique(keys)
        counts = np.bincount(keys // n, minlength=self.num_centroids)
        offsets = np.zeros(self.num_centroids + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, (keys % n).astype(np.int32)

    @staticmethod
    def _open_segment(folder: Path, seg: int, keep16: bool) -> dict[str, np.ndarray]:
        arrays = {"codes": load_npy(folder / f"codes-{seg:05d}.npy"),
                  "residuals": load_npy(folder / f"residuals-{seg:05d}.npy"),
                  "postings_offsets": load_npy(folder / f"postings-{seg:05d}.offsets.npy", False),
                  "postings_docs": load_npy(folder / f"postings-{seg:05d}.docs.npy", False)}
        if keep16:
            arrays["embeddings"] = load_npy(folder / f"embeddings-{seg:05d}.npy")
        return arrays

    @classmethod
    def load(cls, folder: Path, manifest: dict) -> "PlaidEngine":
        params = manifest["params"]
        nbits = int(params["nbits"])
        if nbits not in (2, 4, 8):
            raise IndexFormatError(f"{folder}: nbits {nbits} is not 2, 4 or 8")
        lo, step = load_npy(folder / "codec_lo.npy", False), load_npy(folder / "codec_step.npy",
                                                                       False)
        centroids = load_npy(folder / "centroids.npy", False)
        dim = manifest["dims"]["dim"]
        if centroids.ndim != 2 or centroids.shape[1] != dim or lo.shape != (dim,) or \
                step.shape != (dim,):
            raise IndexFormatError(f"{folder}: centroids {centroids.shape} or codec "
                                   f"{lo.shape}/{step.shape} do not fit {dim}-d vectors")
        segments = Segments()
        for seg, info in enumerate(manifest["segments"]):
            segments.append(cls._open_segment(folder, seg, bool(params.get("keep_float16", True))),
                            info["rows"])
        return cls(centroids, load_npy(folder / "coarse.npy", False),
                   ResidualCodec(nbits, lo, step), segments)

    def check(self, tokens: int, dim: int, deep: bool = True) -> None:
        """Every array has the shape the manifest implies; with ``deep`` also every centroid code
        and posting is in range (reads the codes and postings once: ~60 ms per 1M documents), so
        a damaged file is refused at load instead of failing or misleading a search."""
        k, width = self.num_centroids, self.codec.bytes_per_vector
        for s, seg in enumerate(self.segments.arrays):
            rows = self.segments.bases[s + 1] - self.segments.bases[s]
            expected = {"codes": (rows, tokens), "residuals": (rows, tokens, width),
                        "embeddings": (rows, tokens, dim), "postings_offsets": (k + 1,)}
            for name, shape in expected.items():
                if name in seg and seg[name].shape != shape:
                    raise IndexFormatError(f"{name} of segment {s}: shape {seg[name].shape}, "
                                           f"expected {shape}")
            offsets, docs = seg["postings_offsets"], seg["postings_docs"]
            if docs.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(docs) or \
                    bool(np.any(np.diff(offsets) < 0)):
                raise IndexFormatError(f"posting lists of segment {s} are inconsistent")
            if deep and rows:
                for name, bound in (("codes", k), ("postings_docs", rows)):
                    low, high = _value_range(seg[name])
                    if low < 0 or high >= bound:
                        raise IndexFormatError(f"{name} of segment {s} hold values outside "
                                               f"[0, {bound}) (corrupt file)")

    def add_segment(self, folder: Path, seg: int, embeddings: Any, progress,
                    params: dict | None = None) -> tuple[dict, dict]:
        return self._write_segment(folder, seg, embeddings, params or {}, progress)

    # -- searching ----------------------------------------------------------------------------
    def _candidates(self, scores: torch.Tensor, nprobe: int, count: int,
                    deleted: torch.Tensor | None) -> torch.Tensor:
        """Stage 2: approximate scores from each query token's best centroids, via postings.

        approx(d) = sum_i fallback_i + sum over postings (i, c, d) of S[i, c] - fallback_i, where
        fallback_i is the best score among centroids token i did not probe. (A document holding
        several of a token's probed centroids gains from each: cheaper than a max and, measured
        on clustered data, as good for ranking candidates.)
        """
        total_rows = len(self.segments)
        probe = min(nprobe, scores.shape[1])
        top = scores.topk(min(probe + 1, scores.shape[1]), dim=1)
        chosen = top.indices[:, :probe].reshape(-1)
        fallback = (top.values[:, probe] if top.values.shape[1] > probe
                    else torch.zeros(scores.shape[0]))
        gains_per_centroid = (top.values[:, :probe] - fallback[:, None]).reshape(-1)
        approx = torch.full((total_rows,), float(fallback.sum()))
        for s, (offsets, post_docs) in enumerate(self._postings):
            starts, lengths = offsets[chosen], offsets[chosen + 1] - offsets[chosen]
            total = int(lengths.sum())
            if not total:
                continue
            which = torch.repeat_interleave(torch.arange(len(chosen)), lengths)
            begin = torch.cumsum(lengths, 0) - lengths
            docs = post_docs[torch.arange(total) - begin[which] + starts[which]]
            base = self.segments.bases[s]
            approx[base:base + len(self.segments.arrays[s]["codes"])] += torch.bincount(
                docs, weights=gains_per_centroid[which],
                minlength=len(self.segments.arrays[s]["codes"]))
        if deleted is not None:
            approx[deleted] = float("-inf")
        top_docs = approx.topk(min(count, total_rows))
        return top_docs.indices[torch.isfinite(top_docs.values)]

    def _centroid_interaction(self, scores_t: torch.Tensor, rows: torch.Tensor,
                              count: int) -> torch.Tensor:
        """Stage 3: sum_i max_j S[i, code(d_j)] over every code of each candidate."""
        if count >= len(rows):
            return rows
        codes = torch.from_numpy(self.segments.take("codes", rows.numpy()).astype(np.int64))
        per = scores_t[codes.reshape(-1)].view(len(rows), codes.shape[1], -1)
        approx = per.amax(dim=1).sum(dim=-1)
        return rows[approx.topk(count).indices]

    def _residual_scores(self, query: torch.Tensor, scores_t: torch.Tensor, rows: torch.Tensor,
                         dtype: torch.dtype) -> torch.Tensor:
        """Stage 4: MaxSim on decompressed vectors, computed on the codes directly."""
        numpy_rows = rows.numpy()
        codes = torch.from_numpy(self.segments.take("codes", numpy_rows).astype(np.int64))
        packed = torch.from_numpy(self.segments.take("residuals", numpy_rows))
        n, tokens = codes.shape
        levels = unpack_codes(packed.reshape(n * tokens, -1), self.codec.nbits)
        offsets, weights = self.codec.query_terms(query)
        sims = (levels.to(dtype) @ weights.to(dtype).T).float()           # (n*tokens, L)
        sims += scores_t[codes.reshape(-1)].float() + offsets
        return sims.view(n, tokens, -1).amax(dim=1).sum(dim=-1)

    def decompress(self, rows: torch.Tensor) -> torch.Tensor:
        """Float32 vectors (n, L, D) rebuilt from centroid codes and quantised residuals."""
        numpy_rows = rows.numpy()
        codes = torch.from_numpy(self.segments.take("codes", numpy_rows).astype(np.int64))
        packed = torch.from_numpy(self.segments.take("residuals", numpy_rows))
        n, tokens = codes.shape
        residuals = self.codec.decode(packed.reshape(n * tokens, -1))
        return (self.centroids[codes.reshape(-1)] + residuals).view(n, tokens, -1)

    def search(self, queries: torch.Tensor, k: int, deleted: torch.Tensor | None,
               nprobe: int | None = None, candidates: int | None = None,
               ndocs: int | None = None, rescore: int | None = None,
               compute_dtype: torch.dtype | None = None, **_: Any
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        defaults = default_search_params(len(self.segments), self.num_centroids)
        nprobe = nprobe or defaults["nprobe"]
        candidates = max(candidates or defaults["candidates"], k)
        ndocs = max(min(ndocs or defaults["ndocs"], candidates), k)
        rescore = max(rescore or defaults["rescore"], k)
        dtype = compute_dtype or self.compute_dtype
        centroids = self._centroids_c if dtype == self.compute_dtype else self.centroids.to(dtype)
        exact = self.segments.has("embeddings")
        results = []
        for query in queries:
            scores = (query.to(dtype) @ centroids.T).float()              # (L, K)
            rows = self._candidates(scores, nprobe, candidates, deleted)
            if len(rows) == 0:
                results.append((np.empty(0, np.int64), np.empty(0, np.float32)))
                continue
            scores_t = scores.T.contiguous()
            rows = self._centroid_interaction(scores_t, rows, ndocs)
            approx = self._residual_scores(query, scores_t, rows, dtype)
            keep = min(rescore if exact else k, len(rows))
            top = approx.topk(keep)
            rows = rows[top.indices]
            if exact:
                vectors = self.segments.take("embeddings", rows.numpy())
                final = maxsim_block(query[None], torch.from_numpy(vectors.astype(np.float32)))[0]
            else:
                final = maxsim_block(query[None], self.decompress(rows))[0]
            best = final.topk(min(k, len(rows)))
            results.append((rows[best.indices].numpy(), best.values.numpy()))
        return results

"""A PLAID-style compressed multi-vector index (numpy and torch only, nothing compiled).

Storage per document: the centroid id of each of its 32 vectors, each residual quantised to
``nbits`` per dimension, and doc-level posting lists (centroid -> documents that have a vector
there); optionally the float16 vectors on disk for exact re-scoring of the final candidates.
Building: plaid_build.py; searching: plaid_search.py (the stages are described there).

What a search keeps resident: codes, residuals, posting lists and the centroids in the
compute dtype (about 2.2 KB per document at 4 bits). The float16 copy (8 KB per document) is
read a few rows per query and never mapped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .centroids import CentroidAssigner
from .codec import ResidualCodec
from .engine import IndexEngine
from .exact import fast_bf16
from .params import PlaidBuildParams
from .plaid_build import CENTROID_FILES, borrow, centroids_digest, code_dtype, train, write_segment
from .plaid_search import Workspace, int8_matmul, padded_centroids, plaid_search, to_int8
from .segments import Segments, iter_chunks, segment_file
from .storage import IndexFormatError, load_npy, populate, write_npy

__all__ = ["PlaidEngine"]

logger = logging.getLogger(__name__)


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


class PlaidEngine(IndexEngine):
    method = "plaid"

    def __init__(self, folder: Path, coarse: np.ndarray, codec: ResidualCodec,
                 segments: Segments, params: dict[str, Any],
                 centroids: np.ndarray | None = None) -> None:
        self.folder = folder
        self.coarse = coarse
        self.codec = codec
        self.segments = segments
        self.params = params
        self.compute_dtype = torch.int8 if int8_matmul() else \
            torch.bfloat16 if fast_bf16() else torch.float32
        self._centroids32 = centroids
        self.num_centroids = int(self.centroids_f32().shape[0])
        self._centroids: dict[torch.dtype, Any] = {}
        self.centroids_in(self.compute_dtype)
        if self.compute_dtype != torch.float32:
            self._centroids32 = None  # read again only if a float32 search or an add needs it
        elif isinstance(centroids, np.memmap):
            self._centroids32 = np.array(centroids)
        self.postings = [self._postings(seg) for seg in segments.arrays]
        self._populate_maps()
        self.workspace = Workspace()
        self._assigner: CentroidAssigner | None = None

    @staticmethod
    def _postings(seg: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(seg["postings_offsets"], dtype=np.int64), seg["postings_docs"])

    def _populate_maps(self) -> None:
        """The maps a search reads at random (codes, residuals, posting lists) of every
        segment, populated under one memory budget (storage.populate)."""
        populate([seg[name] for seg in self.segments.arrays
                  for name in ("codes", "residuals", "postings_docs")])

    def centroids_f32(self) -> np.ndarray:
        if self._centroids32 is None:
            return load_npy(self.folder / "centroids.npy", mmap=False)
        return self._centroids32

    def centroids_in(self, dtype: torch.dtype) -> Any:
        """The centroids as stage 1 of a search multiplies them: a tensor in ``dtype``, or for
        int8 the rows rounded to 7 bits with one scale each, both padded with zeros to a
        whole number of stage-1 blocks."""
        if dtype not in self._centroids:
            source = self.centroids_f32()  # at load a read-only map, dropped after this
            if dtype == torch.int8:
                padded = padded_centroids(len(source))
                rows = torch.zeros((padded, source.shape[1]), dtype=torch.int8)
                scale = torch.zeros(padded)
                # 512 rows at a time: full-size float temporaries (3 x 8 MB at 16K centroids)
                # would stay in the heap as resident memory the search never uses again
                for start, stop in iter_chunks(len(source), 512):
                    block, block_scale = to_int8(torch.from_numpy(np.array(
                        source[start:stop], dtype=np.float32)), 1)
                    rows[start:stop] = block
                    scale[start:stop] = block_scale.squeeze(1)
                self._centroids[dtype] = (rows, scale)
            else:
                self._centroids[dtype] = torch.from_numpy(np.array(source, dtype=np.float32)
                                                          ).to(dtype)
        return self._centroids[dtype]

    def _assigner_for(self) -> CentroidAssigner:
        if self._assigner is None:
            # documents added later are assigned the way the build assigned its own
            self._assigner = CentroidAssigner(self.centroids_f32(), self.coarse,
                                              nprobe=int(self.params.get("assign_nprobe",
                                                                     PlaidBuildParams.assign_nprobe)))
        return self._assigner

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, folder: Path, embeddings: Any, params: dict, progress
              ) -> tuple[dict, dict, dict]:
        nbits = params["nbits"]
        if params["centroids"]:
            centroids, coarse, codec, used = borrow(params["centroids"], nbits)
        else:
            centroids, coarse, codec, used = train(embeddings, params)
        files = {name: write_npy(folder, name, array) for name, array in
                 zip(CENTROID_FILES, (centroids, coarse, codec.lo, codec.step))}
        used.update({"nbits": nbits, "keep_float16": params["keep_float16"],
                     "centroids_digest": centroids_digest(files, nbits)})
        engine = cls(folder, coarse, codec, Segments(), used, centroids)
        engine._assigner = CentroidAssigner(centroids, coarse, nprobe=used["assign_nprobe"])
        seg_files, stats = engine.add_segment(folder, 0, embeddings, progress,
                                              {**params, **used})
        files.update(seg_files)
        return files, used, stats

    @staticmethod
    def _open_segment(folder: Path, seg: int, keep16: bool) -> dict[str, np.ndarray]:
        # plain ndarray views of the maps: np.memmap's Python-level __getitem__ costs ~7 us a
        # slice, and a search slices hundreds of posting lists
        arrays = {"codes": load_npy(folder / segment_file("codes", seg)).view(np.ndarray),
                  "residuals": load_npy(folder / segment_file("residuals", seg)).view(np.ndarray),
                  "postings_offsets": load_npy(
                      folder / segment_file("postings", seg, ".offsets.npy"), False),
                  "postings_docs": load_npy(folder / segment_file("postings", seg, ".docs.npy"))
                  .view(np.ndarray)}
        if keep16:  # stays a memmap: read by positional reads (see segments.read_rows)
            arrays["embeddings"] = load_npy(folder / segment_file("embeddings", seg))
        return arrays

    @classmethod
    def load(cls, folder: Path, manifest: dict) -> PlaidEngine:
        params = manifest["params"]
        nbits = int(params["nbits"])
        if nbits not in (2, 4, 8):
            raise IndexFormatError(f"{folder}: nbits {nbits} is not 2, 4 or 8")
        lo, step = load_npy(folder / "codec_lo.npy", False), load_npy(folder / "codec_step.npy",
                                                                       False)
        centroids = load_npy(folder / "centroids.npy")  # mapped: see centroids_in
        dim = manifest["dims"]["dim"]
        if centroids.ndim != 2 or centroids.shape[1] != dim or lo.shape != (dim,) or \
                step.shape != (dim,) or centroids.dtype != np.float32:
            raise IndexFormatError(f"{folder}: centroids {centroids.shape} or codec "
                                   f"{lo.shape}/{step.shape} do not fit {dim}-d vectors")
        segments = Segments()
        for seg, info in enumerate(manifest["segments"]):
            segments.append(cls._open_segment(folder, seg, bool(params.get("keep_float16", True))),
                            info["rows"])
        return cls(folder, load_npy(folder / "coarse.npy", False), ResidualCodec(nbits, lo, step),
                   segments, params, centroids)

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
            if seg["codes"].dtype != code_dtype(k) or seg["residuals"].dtype != np.uint8 or \
                    seg["postings_docs"].dtype != np.int32:
                raise IndexFormatError(f"codes, residuals or postings of segment {s} have the "
                                       "wrong type")
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
        """Assign, quantise and write one segment with the trained centroids, and open it."""
        params = {**self.params, **(params or {})}
        files, stats = write_segment(folder, seg, embeddings, self.centroids_f32(),
                                     self._assigner_for(), self.codec, params, progress)
        keep16 = bool(params.get("keep_float16", True))
        self.segments.append(self._open_segment(folder, seg, keep16), embeddings.shape[0])
        self.postings.append(self._postings(self.segments.arrays[-1]))
        self._populate_maps()
        return files, stats

    # -- searching ----------------------------------------------------------------------------
    def decompress(self, rows: torch.Tensor) -> torch.Tensor:
        """Float32 vectors (n, L, D) rebuilt from centroid codes and quantised residuals."""
        numpy_rows = rows.numpy()
        codes = torch.from_numpy(self.segments.take("codes", numpy_rows).astype(np.int64))
        packed = torch.from_numpy(self.segments.take("residuals", numpy_rows))
        n, tokens = codes.shape
        residuals = self.codec.decode(packed.reshape(n * tokens, -1))
        centroids = torch.from_numpy(self.centroids_f32())
        return (centroids[codes.reshape(-1)] + residuals).view(n, tokens, -1)

    def search(self, queries: torch.Tensor, k: int, deleted: torch.Tensor | None,
               **params: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        return plaid_search(self, queries, k, deleted, params)


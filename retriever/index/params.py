"""Index parameters in one place: the build parameters of each method (typed, with their
defaults, checked at build time), the search keys an index accepts with their checks, and the
plaid engine's adaptive search defaults.

Every stage of a plaid search keeps a number of documents that grows with the collection
(more documents crowd every centroid's neighbourhood). ``effort`` scales all of them at once: 1
is the default the benchmarks hold to their targets, 2 buys recall for about twice the time,
0.5 halves the time; explicit ``nprobe`` / ``candidates`` / ``ndocs`` / ``rescore`` override
single stages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..dataconfig import from_mapping, known_fields
from ..errors import UserInputError, UserTypeError

__all__ = ["BUILD_PARAMS", "MAX_EFFORT", "SEARCH_KEYS", "ExactBuildParams", "PlaidBuildParams",
           "check_build_params", "check_search_params", "plaid_defaults"]


@dataclass(frozen=True)
class ExactBuildParams:
    """An exact index stores the float16 vectors and nothing else."""

    chunk_size: int = 4096          # rows written per block

    def __post_init__(self) -> None:
        _positive(self, "chunk_size")


@dataclass(frozen=True)
class PlaidBuildParams:
    """A plaid index: centroids trained on a sample, residuals quantised to ``nbits``."""

    nbits: int = 4                  # bits per residual dimension: 2, 4 or 8
    num_centroids: int | None = None   # None: the PLAID rule for the number of vectors
    sample_size: int | None = None  # vectors the centroids are trained on (None: 32 per centroid)
    seed: int = 0
    assign_nprobe: int = 4          # coarse cells searched when assigning a vector its centroid
    keep_float16: bool = True       # keep the float16 vectors for exact final scores (8 KB/doc)
    chunk_size: int = 4096          # rows assigned and written per block
    centroids: str | None = None    # a plaid index whose trained centroids this build reuses

    def __post_init__(self) -> None:
        if isinstance(self.nbits, int) and self.nbits not in (2, 4, 8):
            raise UserInputError(f"nbits must be 2, 4 or 8, got {self.nbits}")
        for name in ("num_centroids", "sample_size", "assign_nprobe", "chunk_size"):
            _positive(self, name)
        if self.centroids is not None:  # a path-like is kept as text: the manifest is JSON
            object.__setattr__(self, "centroids", str(self.centroids))


logger = logging.getLogger(__name__)

BUILD_PARAMS: dict[str, type] = {"exact": ExactBuildParams, "plaid": PlaidBuildParams}


def _positive(params: Any, name: str) -> None:
    value = getattr(params, name)
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise UserInputError(f"build parameter {name} must be a positive integer, got {value!r}")


def check_build_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """All build parameters of ``method`` (defaults filled in), checked: a key no method knows
    (a misspelling) is a TypeError naming it with the closest known one, a bad value a
    ValueError or TypeError. A setting of the other method only (``num_centroids`` for an exact
    index) does not apply and is dropped with a warning, so one config serves both."""
    if method not in BUILD_PARAMS:
        raise UserInputError(f"unknown index method {method!r}; use one of {sorted(BUILD_PARAMS)}")
    given = {key: value for key, value in params.items() if value is not None}
    if "centroids" in given and method != "plaid":
        raise UserInputError("only a plaid index has centroids to reuse (centroids=...)")
    own = set(known_fields(BUILD_PARAMS[method]))
    other = {name for cls in BUILD_PARAMS.values() for name in known_fields(cls)} - own
    dropped = sorted(key for key in given if key in other)
    if dropped:
        logger.warning("build parameter(s) %s do not apply to a %s index: ignored", dropped,
                       method)
    checked = from_mapping(BUILD_PARAMS[method],
                           {key: value for key, value in given.items() if key not in other},
                           what=f"{method} build parameter", error=UserTypeError)
    return asdict(checked)


SEARCH_KEYS = ("effort", "nprobe", "candidates", "ndocs", "rescore", "compute_dtype",
               "chunk_size")
_COUNTS = ("nprobe", "candidates", "ndocs", "rescore", "chunk_size")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}
MAX_EFFORT = 16.0


def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked and normalised (dtype names become torch dtypes); unknown keys are a
    TypeError naming them, bad values a ValueError. Used by ``search`` and by the config."""
    unknown = sorted(set(params) - set(SEARCH_KEYS))
    if unknown:
        raise UserTypeError(f"unknown search parameter(s): {unknown}; known: {list(SEARCH_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key == "effort":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or not 0 < value <= MAX_EFFORT:
                raise UserInputError(f"search effort must be a number in (0, {MAX_EFFORT:g}], got "
                                 f"{value!r}")
            out[key] = float(value)
        elif key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"search parameter {key} must be a positive integer, got "
                                 f"{value!r}")
            out[key] = value
        else:  # compute_dtype
            if isinstance(value, str):
                if value not in _DTYPES:
                    raise UserInputError(f"compute_dtype must be one of {sorted(_DTYPES)}, got "
                                     f"{value!r}")
                value = _DTYPES[value]
            if value not in _DTYPES.values():
                raise UserInputError(f"compute_dtype must be one of {sorted(_DTYPES)}, "
                                     f"got {value!r}")
            out[key] = value
    return out


def plaid_defaults(num_docs: int, num_centroids: int, effort: float = 1.0,
                   coarse_residuals: bool = False) -> dict[str, int]:
    """Stage sizes for a collection of ``num_docs`` documents and ``num_centroids`` centroids.

    Chosen on the benchmark data (bench/search.py; the README and the notes of issue 13 give
    what they measure). More documents crowd every centroid's neighbourhood, so each stage
    keeps more of them as N grows, though slower than N (relevant documents stay few):
    candidates like N^0.5, the documents scored on their residuals like N^0.6 and the probed
    centroids per query token like N^0.78 (at 1M, probes were what recall lacked most: 16 -> 48
    took recall@10 from 0.931 to 0.949, doubling the candidates only to 0.94). Probes stop at
    64: beyond a few million documents, shard the index (parts are searched one by one).

    ``coarse_residuals`` (2-bit residuals, final scores exact on the float16 copy): stage 4's
    ranking is coarser, so 4x as many documents go on to exact scores (hard 100K recall@10
    0.932 -> 0.987 for rescore 32 -> 128; more residual-scored documents gave 0.937)."""
    ratio = max(num_docs, 1) / 100_000
    # k-means may return 16384 + a few centroids; at 32768 and more each list is short enough
    # to probe more of them
    probes = min(64, max(16, 8 * ratio ** 0.78)) if num_centroids >= 32768 else 8
    grow = ratio ** 0.6 if ratio > 1 else math.sqrt(ratio)
    return {
        "nprobe": max(1, round(probes * math.sqrt(effort))),
        "candidates": max(64, round(4096 * math.sqrt(ratio) * effort)),
        "ndocs": max(32, round(512 * grow * effort)),
        "rescore": max(16, round((128 if coarse_residuals else 32) * effort)),
    }

"""Search parameters: the keys an index accepts, their checks, and the plaid engine's adaptive
defaults.

Every stage of a plaid search keeps a number of documents that grows with the collection
(more documents crowd every centroid's neighbourhood). ``effort`` scales all of them at once: 1
is the default the benchmarks hold to their targets, 2 buys recall for about twice the time,
0.5 halves the time; explicit ``nprobe`` / ``candidates`` / ``ndocs`` / ``rescore`` override
single stages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["MAX_EFFORT", "SEARCH_KEYS", "check_search_params", "plaid_defaults"]

SEARCH_KEYS = ("effort", "nprobe", "candidates", "ndocs", "rescore", "compute_dtype",
               "chunk_size")
_COUNTS = ("nprobe", "candidates", "ndocs", "rescore", "chunk_size")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MAX_EFFORT = 16.0


def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked and normalised (dtype names become torch dtypes); unknown keys are a
    TypeError naming them, bad values a ValueError. Used by ``search`` and by the config."""
    unknown = sorted(set(params) - set(SEARCH_KEYS))
    if unknown:
        raise TypeError(f"unknown search parameter(s): {unknown}; known: {list(SEARCH_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key == "effort":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or not 0 < value <= MAX_EFFORT:
                raise ValueError(f"search effort must be a number in (0, {MAX_EFFORT:g}], got "
                                 f"{value!r}")
            out[key] = float(value)
        elif key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"search parameter {key} must be a positive integer, got "
                                 f"{value!r}")
            out[key] = value
        else:  # compute_dtype
            if isinstance(value, str):
                if value not in _DTYPES:
                    raise ValueError(f"compute_dtype must be one of {sorted(_DTYPES)}, got "
                                     f"{value!r}")
                value = _DTYPES[value]
            if value not in _DTYPES.values():
                raise ValueError(f"compute_dtype must be float32 or bfloat16, got {value!r}")
            out[key] = value
    return out


def plaid_defaults(num_docs: int, num_centroids: int, effort: float = 1.0) -> dict[str, int]:
    """Stage sizes for a collection of ``num_docs`` documents and ``num_centroids`` centroids.

    Chosen on the benchmark data (bench/search.py; the README and the note of issue 13 give
    what they measure). Candidates and ndocs grow like sqrt(N): the documents a query has to
    look at grow slower than the collection, because relevant ones stay few."""
    scale = math.sqrt(max(num_docs, 1) / 100_000)
    nprobe = 8 * (2 if num_centroids > 16384 else 1)
    return {
        "nprobe": max(1, round(nprobe * math.sqrt(effort))),
        "candidates": max(64, round(4096 * scale * effort)),
        "ndocs": max(32, round(512 * scale * effort)),
        "rescore": max(16, round(64 * effort)),
    }

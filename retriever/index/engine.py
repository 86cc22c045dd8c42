"""What an index engine is: the storage and search of one method's segments, behind the one
interface ``MultiVectorIndex`` drives (ids, deletions, manifests and sharding live there, once).

An engine writes and opens *segments* (one per build or add) inside a data folder, checks what
it opened against the manifest, and answers a search with row numbers and exact MaxSim scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["IndexEngine", "Progress", "SearchRows"]

Progress = Callable[[int], Any]                       # called with each block's row count
SearchRows = list[tuple[np.ndarray, np.ndarray]]     # per query: (rows, scores), best first


class IndexEngine(ABC):
    """One index method (``exact``, ``plaid``)."""

    method: ClassVar[str]

    @classmethod
    @abstractmethod
    def build(cls, folder: Path, embeddings: Any, params: dict[str, Any], progress: Progress
              ) -> tuple[dict, dict, dict]:
        """Write segment 0 (and any trained state) from ``embeddings`` (N, tokens, dim) with the
        checked build ``params`` (see params.py); returns (files, parameters to record in the
        manifest, statistics of the segment)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> IndexEngine:
        """Open every segment the manifest lists (memory-mapped where the engine says so)."""

    @abstractmethod
    def check(self, tokens: int, dim: int, deep: bool = True) -> None:
        """Raise IndexFormatError where an array does not fit the manifest (``deep``: also
        value ranges, reading the arrays once)."""

    @abstractmethod
    def add_segment(self, folder: Path, seg: int, embeddings: Any, progress: Progress,
                    params: dict | None = None) -> tuple[dict, dict]:
        """Write and open one more segment; returns (files, statistics). ``params`` (the
        manifest's) may be updated with what the new rows change."""

    @abstractmethod
    def search(self, queries: torch.Tensor, k: int, deleted: torch.Tensor | None,
               **params: Any) -> SearchRows:
        """Top-``k`` rows per query of a (Q, L, D) float32 batch, skipping ``deleted`` rows,
        with exact MaxSim scores; ``params`` are checked search parameters."""

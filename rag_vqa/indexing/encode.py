"""Encoding knowledge-base passages with the ReT document encoder, shard by shard.

Within a shard, passages are sorted by token length into batches; DataLoader workers read the
passages from the SQLite store, decode images and run the processor while the main process runs
the model. A missing or broken image is counted (and logged) and its passage is encoded
text-only (image mask 0), as the reference does for passages without an image.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from retriever import ImageLoadError, ReTProcessor
from retriever.encoding import encode_batches, encode_prepared, feature_shape, length_batches
from retriever.processing_ret import ReTInputs

from ..kb import PassageStore
from .shards import ShardInfo, ShardSet

__all__ = [
    "MAX_PROBLEMS_KEPT",
    "ShardBatches",
    "ShardFeatures",
    "encode_batch",
    "encode_shards",
    "feature_shape",
    "plan_batches",
]

logger = logging.getLogger(__name__)

MAX_PROBLEMS_KEPT = 20


@dataclass
class PreparedBatch:
    rows: list[int]
    inputs: ReTInputs
    statuses: list[str]
    problems: list[dict[str, Any]]


class ShardBatches(Dataset):
    """Item i = batch i of a shard, fully prepared (passages read, images decoded, tensors made).

    The store is opened lazily in each worker process (SQLite connections do not cross forks),
    unless the caller already has it open (``store``: one Ray task reading several shards).
    """

    def __init__(self, kb_folder: Path, batches: list[list[int]], processor: ReTProcessor,
                 store: PassageStore | None = None) -> None:
        self.kb_folder = kb_folder
        self.batches = batches
        self.processor = processor
        self._store = store

    def __len__(self) -> int:
        return len(self.batches)

    def _open(self) -> PassageStore:
        if self._store is None:
            self._store = PassageStore.open(self.kb_folder)
        return self._store

    def _image(self, store: PassageStore, passage: Any) -> tuple[Any, str, str]:
        if not passage.image:
            return None, "none", ""
        try:
            path = store.resolve_image(passage)
        except ValueError as exc:  # an unsafe path that slipped past import
            return None, "broken", str(exc)
        if path is None:
            return None, "missing", f"no file for image {passage.image!r}"
        try:
            return self.processor.load_image(path), "ok", ""
        except ImageLoadError as exc:
            return None, "broken", str(exc)

    def __getitem__(self, i: int) -> PreparedBatch:
        store = self._open()
        rows = self.batches[i]
        passages = store.get_rows(rows)
        images, statuses, problems = [], [], []
        for row, passage in zip(rows, passages):
            image, status, reason = self._image(store, passage)
            images.append(image)
            statuses.append(status)
            if reason:
                problems.append({"row": row, "passage_id": passage.passage_id,
                                 "image": passage.image, "status": status, "reason": reason})
        inputs = self.processor([p.text for p in passages], images)
        return PreparedBatch(rows, inputs, statuses, problems)


def _worker_init(_: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    torch.set_num_threads(1)


def plan_batches(store: PassageStore, processor: ReTProcessor, start: int, stop: int,
                 batch_size: int) -> list[list[int]]:
    """Rows of [start, stop) grouped into batches of similar token length (longest first)."""
    rows = list(range(start, stop))
    lengths = processor.token_lengths([p.text for p in store.get_rows(rows)])
    return [[rows[i] for i in batch] for batch in length_batches(lengths, batch_size)]


def encode_batch(encoder: torch.nn.Module, inputs: ReTInputs) -> np.ndarray:
    """Features of one prepared batch as float32 numpy, on the encoder's device and dtype (the
    caller holds eval and inference mode). The Ray workers use it."""
    return encode_prepared(encoder, inputs).numpy()


class ShardFeatures:
    """One shard's features and image report, filled batch by batch in any order, then written.

    A row filled twice is refused: with batches arriving from several workers (and retried
    after a worker dies), that is the check that no passage is encoded into the shard twice."""

    def __init__(self, index: int, start: int, stop: int, shape: tuple[int, int]) -> None:
        self.index, self.start, self.stop = index, start, stop
        self.features = np.empty((stop - start, *shape), dtype=np.float16)
        self.filled = np.zeros(stop - start, dtype=bool)
        self.counts: Counter[str] = Counter()
        self.problems: list[dict[str, Any]] = []
        self.seconds = 0.0

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    def add(self, rows: Any, features: np.ndarray, statuses: list[str],
            problems: list[dict[str, Any]], seconds: float = 0.0) -> None:
        offsets = np.asarray(rows, dtype=np.int64) - self.start
        if offsets.min() < 0 or offsets.max() >= len(self.filled) or self.filled[offsets].any() \
                or len(np.unique(offsets)) != len(offsets):
            raise RuntimeError(f"shard {self.index}: rows {int(offsets.min()) + self.start}.."
                               f"{int(offsets.max()) + self.start} arrived twice or out of range")
        self.features[offsets] = features
        self.filled[offsets] = True
        self.counts.update(statuses)
        for problem in problems:
            logger.log(logging.WARNING if problem["status"] == "broken" else logging.DEBUG,
                       "passage %s: %s", problem["passage_id"], problem["reason"])
        self.problems.extend(problems[: max(0, MAX_PROBLEMS_KEPT - len(self.problems))])
        self.seconds += seconds

    def write(self, shards: ShardSet, seconds: float | None = None) -> ShardInfo:
        if not self.complete:
            raise RuntimeError(f"shard {self.index} is incomplete: "
                               f"{int((~self.filled).sum())} rows missing")
        info = ShardInfo(self.index, self.start, self.stop, images=dict(self.counts),
                         problems=self.problems,
                         seconds=self.seconds if seconds is None else seconds)
        return shards.write(info, self.features)


def encode_shards(kb_folder: Path, encoder: torch.nn.Module, processor: ReTProcessor,
                  shards: ShardSet, *, batch_size: int = 32, workers: int = 1,
                  on_rows: Callable[[int], None] = lambda n: None
                  ) -> tuple[list[ShardInfo], int]:
    """Encode every unfinished shard; returns the info of all shards, in order, and how many
    were already finished (resumed)."""
    shape = feature_shape(encoder)
    infos: list[ShardInfo] = []
    resumed = 0
    with PassageStore.open(kb_folder) as store:
        for index in range(shards.count):
            done = shards.finished(index)
            if done is not None:
                infos.append(done)
                resumed += 1
                on_rows(done.stop - done.start)
                continue
            start, stop = shards.bounds(index)
            t0 = time.perf_counter()
            batches = plan_batches(store, processor, start, stop, batch_size)
            loader = DataLoader(ShardBatches(kb_folder, batches, processor), batch_size=None,
                                shuffle=False, num_workers=workers,
                                worker_init_fn=_worker_init if workers else None,
                                prefetch_factor=2 if workers else None)
            shard = ShardFeatures(index, start, stop, shape)

            def sink(batch: PreparedBatch, features: torch.Tensor,
                     shard: ShardFeatures = shard) -> None:
                shard.add(batch.rows, features.numpy(), batch.statuses, batch.problems)
                on_rows(len(batch.rows))

            encode_batches(encoder, ((batch, batch.inputs) for batch in loader), sink)
            infos.append(shard.write(shards, seconds=time.perf_counter() - t0))
    return infos, resumed

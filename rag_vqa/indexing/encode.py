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
from retriever.encoding import eval_mode
from retriever.processing_ret import ReTInputs

from ..kb import PassageStore
from .shards import ShardInfo, ShardSet

__all__ = ["ShardBatches", "encode_shards", "MAX_PROBLEMS_KEPT"]

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

    The store is opened lazily in each worker process (SQLite connections do not cross forks).
    """

    def __init__(self, kb_folder: Path, batches: list[list[int]], processor: ReTProcessor) -> None:
        self.kb_folder = kb_folder
        self.batches = batches
        self.processor = processor
        self._store: PassageStore | None = None

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


def _plan_batches(store: PassageStore, processor: ReTProcessor, start: int, stop: int,
                  batch_size: int) -> list[list[int]]:
    """Rows of [start, stop) grouped into batches of similar token length (longest first)."""
    rows = list(range(start, stop))
    texts = [p.text for p in store.get_rows(rows)]
    lengths = processor.token_lengths(texts)
    order = sorted(range(len(rows)), key=lambda i: (-lengths[i], i))
    return [[rows[i] for i in order[j:j + batch_size]] for j in range(0, len(order), batch_size)]


def encode_shards(kb_folder: Path, encoder: torch.nn.Module, processor: ReTProcessor,
                  shards: ShardSet, *, batch_size: int = 32, workers: int = 1,
                  on_rows: Callable[[int], None] = lambda n: None
                  ) -> tuple[list[ShardInfo], int]:
    """Encode every unfinished shard; returns the info of all shards, in order, and how many
    were already finished (resumed)."""
    param = next(encoder.parameters())
    device, dtype = param.device, param.dtype
    config = encoder.config
    k = 1 if config.use_pooler_features else config.num_queries
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
            batches = _plan_batches(store, processor, start, stop, batch_size)
            loader = DataLoader(ShardBatches(kb_folder, batches, processor), batch_size=None,
                                shuffle=False, num_workers=workers,
                                worker_init_fn=_worker_init if workers else None,
                                prefetch_factor=2 if workers else None)
            features = np.empty((stop - start, k, config.output_dim), dtype=np.float16)
            counts: Counter[str] = Counter()
            problems: list[dict[str, Any]] = []
            with eval_mode(encoder), torch.inference_mode():
                for batch in loader:
                    out = encoder(**batch.inputs.to(device, dtype).as_kwargs())
                    features[np.asarray(batch.rows) - start] = out.float().cpu().numpy()
                    counts.update(batch.statuses)
                    for problem in batch.problems:
                        logger.log(logging.WARNING if problem["status"] == "broken"
                                   else logging.DEBUG, "passage %s: %s", problem["passage_id"],
                                   problem["reason"])
                    problems.extend(batch.problems[: max(0, MAX_PROBLEMS_KEPT - len(problems))])
                    on_rows(len(batch.rows))
            info = ShardInfo(index, start, stop, images=dict(counts), problems=problems,
                             seconds=time.perf_counter() - t0)
            infos.append(shards.write(info, features))
    return infos, resumed

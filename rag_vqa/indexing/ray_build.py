"""Encoding a knowledge base on Ray: the local build's shards, filled by many workers.

Data path: the unfinished shards (id ranges of the KB) become a Ray Dataset; CPU tasks read each
shard's passages, batch them by token length and decode the images with the local build's own
code (``plan_batches``, ``ShardBatches``); ``map_batches`` on an actor pool of ReT document
encoders (one model load per actor, GPUs per actor) encodes each batch; the driver gathers a
shard's features and writes the shard with ``ShardSet.write``, as the local build does. The
local index assembly follows (build.py): one build format, two ways to fill it.

Faults: a killed driver leaves the written shards, which the next run resumes from. Ray Data
restarts a killed actor and retries its unfinished batches (``max_restarts`` / task retries);
``ShardFeatures`` refuses a row that arrives twice, and a shard is written once, when complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retriever.processing_ret import ReTInputs, ReTProcessor

from ..kb import PassageStore
from ..kb.manifest import SQLITE_NAME
from ..loading import LoadedRetriever, load_retriever
from ..ray_runtime import (
    RayOptions,
    SharedPath,
    WorkerPlan,
    WorkerSetupError,
    check_visible,
    node_name,
    shared_path,
    versions,
)
from ..ray_workers import SAMPLE_IMAGES, iter_results, map_on_workers, ray_job, worker_setup
from .encode import (
    ShardBatches,
    ShardFeatures,
    _worker_init,
    encode_batch,
    feature_shape,
    plan_batches,
)
from .shards import ShardInfo, ShardSet

__all__ = ["PassageEncoder", "encode_shards_on_ray"]

logger = logging.getLogger(__name__)

INPUT_FIELDS = tuple(f.name for f in fields(ReTInputs))
# What a decoding task reserves for its prepared batches (a few batches of decoded images).
# Asking for it also keeps Ray Data from fusing the decoding into the encoder actors (it fuses
# a task stage into an actor stage with the same resource request), which would run decoding
# and encoding one after the other in the same process again.
DECODE_MEMORY = 512 << 20


def _decode_shards(batch: dict[str, np.ndarray], *, kb: str, processor: ReTProcessor,
                   batch_size: int, paths: list[SharedPath]) -> Iterator[dict[str, np.ndarray]]:
    """A CPU task: each shard's batches prepared exactly as the local build prepares them
    (passages read, batched by token length, images decoded, tensors made), one row each."""
    check_visible(paths)
    _worker_init(0)
    decoder = np.array([f"{node_name()}:{os.getpid()}"])
    with PassageStore.open(kb, verify="size") as store:  # digests: checked per node up front
        for index, start, stop in zip(batch["index"], batch["start"], batch["stop"]):
            planned = plan_batches(store, processor, int(start), int(stop), batch_size)
            prepared = ShardBatches(Path(kb), planned, processor, store=store)
            for i in range(len(prepared)):
                t0 = time.perf_counter()
                item = prepared[i]
                row = {name: getattr(item.inputs, name).numpy()[None] for name in INPUT_FIELDS}
                row.update(index=np.array([index]), rows=np.asarray(item.rows, np.int64)[None],
                           report=np.array([json.dumps({"statuses": item.statuses,
                                                        "problems": item.problems})]),
                           seconds=np.array([time.perf_counter() - t0]), decoder=decoder)
                yield row


class PassageEncoder:
    """A Ray actor holding one ReT document encoder, loaded once (on its GPU when it has one)
    and checked against the driver's: the same name must give the same config and weights."""

    def __init__(self, name: str, device: str, dtype: str, identity: dict[str, Any],
                 threads: int) -> None:
        with worker_setup(f"the retriever {name!r}", threads) as where:
            loaded = load_retriever(name, device, dtype)
        if loaded.identity() != identity:
            raise WorkerSetupError(
                f"{where} loads the retriever {name!r} with other config or weights "
                f"({loaded.identity()}) than the driver ({identity}): give every node the same "
                "checkpoint (a folder on shared storage, or the same hub revision)")
        self.encoder = loaded.model.document_encoder.eval()
        self.worker = f"{node_name()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = ReTInputs(*(torch.from_numpy(np.array(batch[name][0])) for name in INPUT_FIELDS))
        t0 = time.perf_counter()
        with torch.inference_mode():
            features = encode_batch(self.encoder, inputs).astype(np.float16)
        return {"index": batch["index"], "rows": batch["rows"], "report": batch["report"],
                "features": features[None], "worker": np.array([self.worker]),
                "decoder": batch["decoder"],
                "seconds": batch["seconds"] + (time.perf_counter() - t0)}


def _shared_paths(kb_folder: Path, retriever: LoadedRetriever) -> list[SharedPath]:
    """What the decoding tasks and the encoders read: the KB (by digest), the image root with a
    few of its images, and a retriever checkpoint folder."""
    paths = [shared_path("knowledge base", kb_folder / SQLITE_NAME, digest=True)]
    with PassageStore.open(kb_folder, verify="none") as store:
        root = store.image_root
        if root is not None and root.is_dir():
            paths.append(shared_path("image root", root))
            found = []
            for _, passage in store.iter_rows(0, 5000):
                image = store.resolve_image(passage) if passage.image else None
                if image is not None and image.is_file():
                    found.append(shared_path("image", image))
                    if len(found) == SAMPLE_IMAGES:
                        break
            paths.extend(found)
    if Path(retriever.name).is_dir():
        paths.append(shared_path("retriever checkpoint", retriever.name))
    return paths


def _dataset(ray: Any, kb_folder: Path, retriever: LoadedRetriever, shards: ShardSet,
             todo: list[int], plan: WorkerPlan, batch_size: int,
             paths: list[SharedPath]) -> Any:
    from ray.data import TaskPoolStrategy

    model = retriever.model
    items = [dict(zip(("index", "start", "stop"), (i, *shards.bounds(i)))) for i in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    dataset = dataset.map_batches(
        _decode_shards, batch_size=1, compute=TaskPoolStrategy(size=plan.decode_tasks),
        num_cpus=plan.decode_cpus, memory=DECODE_MEMORY,
        fn_kwargs={"kb": str(kb_folder.resolve()), "processor": model.processor("document"),
                   "batch_size": batch_size, "paths": paths})
    return map_on_workers(dataset, PassageEncoder, plan, name=retriever.name,
                          device="cuda" if plan.gpus_per_worker else "cpu",
                          dtype=str(model.dtype).removeprefix("torch."),
                          identity=retriever.identity(), threads=plan.cpus_per_worker)


def encode_shards_on_ray(kb_folder: Path, retriever: LoadedRetriever, shards: ShardSet,
                         options: RayOptions | str, *, batch_size: int = 32, workers: int = 1,
                         on_rows: Callable[[int], None] = lambda n: None
                         ) -> tuple[list[ShardInfo], int, dict[str, Any]]:
    """``encode_shards`` on Ray: the info of all shards in order, how many were resumed, and
    how the encoding ran (engine, workers, versions, rates). ``workers``: image-decoding tasks
    per Ray worker (what the local build's DataLoader processes do)."""
    options = RayOptions.of(options)
    infos: dict[int, ShardInfo] = {}
    for index in range(shards.count):
        done = shards.finished(index)
        if done is not None:
            infos[index] = done
            on_rows(done.stop - done.start)
    resumed = len(infos)
    todo = [i for i in range(shards.count) if i not in infos]
    engine: dict[str, Any] = {"engine": "ray", "address": options.address,
                              **versions(with_ray=True)}
    if not todo:
        return [infos[i] for i in range(shards.count)], resumed, engine
    shape = feature_shape(retriever.model.document_encoder)
    pending: dict[int, ShardFeatures] = {}
    by_worker: Counter[str] = Counter()
    by_decoder: Counter[str] = Counter()
    paths = _shared_paths(kb_folder, retriever)
    with ray_job(options, paths, decode_per_worker=workers) as (ray, plan):
        logger.info("encoding %d shards on Ray: %s", len(todo), plan)
        dataset = _dataset(ray, kb_folder, retriever, shards, todo, plan, batch_size, paths)
        t0 = time.perf_counter()
        for block in iter_results(dataset):
            for i in range(len(block["index"])):
                index = int(block["index"][i])
                if index not in pending:
                    pending[index] = ShardFeatures(index, *shards.bounds(index), shape)
                shard, rows = pending[index], block["rows"][i]
                report = json.loads(block["report"][i])
                shard.add(rows, block["features"][i], report["statuses"],
                          report["problems"], float(block["seconds"][i]))
                by_worker[str(block["worker"][i])] += len(rows)
                by_decoder[str(block["decoder"][i])] += len(rows)
                on_rows(len(rows))
                if shard.complete:
                    infos[index] = shard.write(shards)
                    del pending[index]
        seconds = time.perf_counter() - t0
    missing = [i for i in todo if i not in infos]
    if missing:
        raise RuntimeError(f"Ray returned no features for {len(missing)} shard(s) (first: "
                           f"{missing[0]}); run the build again to encode them")
    encoded = sum(shards.bounds(i)[1] - shards.bounds(i)[0] for i in todo)
    engine.update(plan.to_dict(), wall_seconds=round(seconds, 3),
                  passages_per_second=round(encoded / seconds, 2) if seconds else 0.0,
                  passages_by_worker=dict(sorted(by_worker.items())),
                  passages_by_decoder=dict(sorted(by_decoder.items())))
    return [infos[i] for i in range(shards.count)], resumed, engine

"""``eval run --ray``: questions answered by a pool of Ray workers, each holding the whole
pipeline (retriever, index, knowledge base, generator) loaded once.

The driver cuts the questions into the batches a local run makes; Ray Data sends each batch to a
worker (``map_batches`` on an actor pool; a killed worker is restarted and its batch retried)
and hands the records back in question order. ``runner.run_eval`` appends them exactly as in a
local run (the same records, fsynced per batch), so resume, ``--retry-failed`` and the run
identity work unchanged. Each worker checks that its pipeline has the driver's identity before
it answers anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from copy import copy
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag_vqa import RagVQA
from rag_vqa.components import Components
from rag_vqa.ray_runtime import RayOptions, SharedPath, WorkerSetupError, check_visible, shared_path
from rag_vqa.ray_workers import SAMPLE_IMAGES, iter_results, map_on_workers, ray_job, worker_setup
from retriever.runtime import resolve_device

from .datasets import EvalQuestion, ImageLocator
from .runner import RunSpec, _differences, _encode, _process

__all__ = ["PipelineWorker", "driver_pipeline", "process_on_ray"]

logger = logging.getLogger(__name__)


def driver_pipeline(pipeline: RagVQA) -> RagVQA:
    """The pipeline the driver keeps: it only needs the retriever's fingerprints, the index and
    the KB (never the generator). Where the configured retriever device does not exist (a
    CPU-only head node), the retriever is loaded on CPU instead: the identity is the same."""
    config = pipeline.config
    try:
        resolve_device(config.retriever.device)
        return pipeline
    except ValueError:
        pass
    logger.info("the driver has no %s: loading the retriever on CPU to fingerprint it",
                config.retriever.device)
    cpu = replace(config, retriever=replace(config.retriever, device="cpu"))
    return RagVQA(config, retriever=Components(cpu).retriever)


class PipelineWorker:
    """A Ray actor answering batches of questions with its own pipeline, built once from the
    driver's configuration and refused unless its identity equals the driver's."""

    def __init__(self, config: Any, spec: RunSpec, locator: ImageLocator,
                 identity: dict[str, Any], threads: int, paths: list[SharedPath]) -> None:
        check_visible(paths)
        with worker_setup("the pipeline", threads) as where:
            self.pipeline = RagVQA(config).check()
            mine = self.pipeline.identity(generation=not spec.retrieval_only)
        differences = _differences(identity, json.loads(json.dumps(mine, default=str)))
        if differences:
            raise WorkerSetupError(f"{where} loads another pipeline than the driver: "
                                   + "; ".join(differences[:6]))
        self.spec, self.locator = spec, locator

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        questions = [EvalQuestion(**item) for item in json.loads(batch["questions"][0])]
        records = _process(self.pipeline, self.spec, questions, self.locator)
        payload = b"".join(_encode(record) for record in records)
        return {"n": batch["n"], "records": np.array([payload], dtype=object)}


def _worker_config(pipeline: RagVQA) -> Any:
    """The driver's configuration with the index, KB and image root as absolute paths."""
    config = pipeline.config
    index, store = pipeline.components.index, pipeline.components.store
    images = str(Path(config.index.images).resolve()) if config.index.images else None
    return replace(config, index=replace(config.index, path=str(Path(index.path).resolve()),
                                         kb=str(Path(store.folder).resolve()), images=images))


def _shared_paths(pipeline: RagVQA, spec: RunSpec, batches: list[list[EvalQuestion]],
                  locator: ImageLocator) -> list[SharedPath]:
    """What a worker reads: index, KB, question images (with a few samples), model folders."""
    store = pipeline.components.store
    paths = [shared_path("index", Path(pipeline.components.index.path) / "manifest.json",
                         digest=True),
             shared_path("knowledge base", Path(store.folder) / "passages.sqlite"),
             shared_path("question image root", locator.root)]
    if spec.image_map:
        paths.append(shared_path("image map", spec.image_map, digest=True))
    samples = []
    for question in (q for batch in batches for q in batch):
        found = locator.find(question.image) if question.image else None
        if found is not None:
            samples.append(shared_path("question image", found))
            if len(samples) == SAMPLE_IMAGES:
                break
    config = pipeline.config
    for what, name in (("retriever", pipeline.components.retriever.name),
                       ("generator", config.generator.model)):
        if Path(name).is_dir():
            paths.append(shared_path(f"{what} checkpoint", name))
    return paths + samples


def process_on_ray(pipeline: RagVQA, spec: RunSpec, batches: list[list[EvalQuestion]],
                   locator: ImageLocator, identity: dict[str, Any],
                   options: RayOptions | str) -> Iterator[list[dict[str, Any]]]:
    """The records of each batch, in batch order, answered on Ray. ``identity``: the pipeline
    part of the run's identity, which every worker must reproduce."""
    if not batches:
        return
    options = RayOptions.of(options)
    paths = _shared_paths(pipeline, spec, batches, locator)
    with ray_job(options, paths) as (ray, plan):
        shipped = copy(locator)
        shipped.root = Path(locator.root).resolve()
        items = [{"n": n, "questions": json.dumps([asdict(q) for q in batch], default=str)}
                 for n, batch in enumerate(batches)]
        dataset = map_on_workers(
            ray.data.from_items(items, override_num_blocks=len(items)), PipelineWorker, plan,
            config=_worker_config(pipeline), spec=spec, locator=shipped, identity=identity,
            threads=plan.cpus_per_worker, paths=paths)
        logger.info("answering %d batches on Ray: %s", len(batches), plan)
        waiting: dict[int, list[dict[str, Any]]] = {}
        following = 0
        for block in iter_results(dataset, preserve_order=True):
            for n, payload in zip(block["n"], block["records"]):
                waiting[int(n)] = [json.loads(line) for line in bytes(payload).split(b"\n")
                                   if line]
                while following in waiting:  # in order even if Ray ever were not
                    yield waiting.pop(following)
                    following += 1
    if following != len(batches):
        raise RuntimeError(f"Ray returned {following} of {len(batches)} batches; run again to "
                           "answer the rest")

"""Training jobs as users describe them: passage sources (a KB folder or a ReT JSONL file), hard
negatives mined with our own index, a TOML file plus overrides, and the run itself.

The training machinery lives in :mod:`retriever.training`; this module only joins it to the
project's knowledge bases and files (data flows rag_vqa -> retriever)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import torch

from retriever import ReTRetriever
from retriever.dataconfig import check_keys
from retriever.errors import UserInputError
from retriever.fileio import DIGEST, atomic_write_json, file_digest, replace_folder
from retriever.sharing import TRAINING_FILE
from retriever.training import (
    JsonlPassages,
    ReTTrainer,
    TrainConfig,
    TrainingDataError,
    TrainPassage,
    TrainResult,
    latest_checkpoint,
    load_train_queries,
    read_jsonl_rows,
)

from . import __version__
from .kb.manifest import MANIFEST_NAME
from .kb.store import PassageStore
from .loading import DEFAULT_RETRIEVER, load_retriever

__all__ = ["KBPassages", "TrainJob", "open_passages", "load_hard_negatives", "load_job",
           "run_training"]

logger = logging.getLogger(__name__)


class KBPassages:
    """A knowledge base (``rag-vqa kb import``) as a training passage source: the text the index
    encodes, and the image file resolved against the KB's image root."""

    def __init__(self, folder: str | Path, image_root: str | Path | None = None) -> None:
        self.store = PassageStore.open(folder, image_root=image_root)

    def get(self, passage_id: str) -> TrainPassage:
        passage = self.store.get(passage_id)
        return TrainPassage(passage.passage_id, passage.text, self.store.resolve_image(passage))

    def ids(self) -> list[str]:
        return self.store.ids()

    def __len__(self) -> int:
        return len(self.store)


def open_passages(path: str | Path, image_root: str | Path | None = None
                  ) -> KBPassages | JsonlPassages:
    """A KB folder (it has a manifest) or a ReT JSONL passage file."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise TrainingDataError(f"{path} is a folder but not a knowledge base (no "
                                    f"{MANIFEST_NAME}); import it with `rag-vqa kb import`")
        return KBPassages(path, image_root)
    if not path.is_file():
        raise FileNotFoundError(f"passages {path} do not exist")
    return JsonlPassages(path, image_root)


def load_hard_negatives(path: str | Path, top: int | None = None) -> dict[str, list[str]]:
    """Hard negatives per query id from a JSONL file whose lines carry ``data_id`` and either
    ``hard_negatives`` (a list of passage ids) or ``retrieved`` (the ``predictions.jsonl`` of
    ``rag-vqa eval run --retrieval-only``: mining with our own index). ``top`` keeps the first
    ids of each list (positives are removed later, when the queries are read)."""
    out: dict[str, list[str]] = {}
    for where, row in read_jsonl_rows(path):
        if row.get("data_id") in (None, ""):
            raise TrainingDataError(f"{where}: a hard-negative line needs data_id")
        data_id = str(row["data_id"])
        if "hard_negatives" in row:
            ids = [str(i) for i in row["hard_negatives"]]
        elif "retrieved" in row:
            ids = [str(r["passage_id"]) for r in row["retrieved"]]
        else:
            raise TrainingDataError(f"{where}: needs 'hard_negatives' or 'retrieved'")
        out.setdefault(data_id, []).extend(ids[:top] if top else ids)
    return out


@dataclass
class TrainJob:
    """Everything one training run needs; ``train`` holds the :class:`TrainConfig` fields."""

    queries: str
    passages: str
    retriever: str = DEFAULT_RETRIEVER
    images: str | None = None             # image root of the queries (and JSONL passages)
    passage_images: str | None = None     # image root of the passages, when different
    val_queries: str | None = None
    val_all_passages: bool = False        # rank against every passage, not only val positives
    hard_negatives: str | None = None
    hard_negatives_top: int | None = 20
    resume: str | None = None             # "latest" or a checkpoint folder
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)


def load_job(path: str | Path | None, overrides: Mapping[str, Any]) -> TrainJob:
    """A job from a TOML file (top-level data keys plus a ``[train]`` table) and overrides
    (``None`` values are ignored; a ``train`` mapping updates the table)."""
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                values = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise UserInputError(f"{path}: invalid TOML ({exc})") from exc
    try:
        check_keys(values, TrainJob, what="key")
    except ValueError as exc:
        raise UserInputError(f"{path}: {exc}") from None
    train = dict(values.pop("train", {}) or {})
    train.update({k: v for k, v in (overrides.get("train") or {}).items() if v is not None})
    values.update({k: v for k, v in overrides.items() if k != "train" and v is not None})
    for key in ("queries", "passages"):
        if not values.get(key):
            raise UserInputError(f"training needs {key} (--{key} or `{key} = ...` in the config)")
    job = TrainJob(**values, train=train)
    _ = job.config  # validate now, not after the models are loaded
    return job


def _existing_run(job: TrainJob, config: TrainConfig) -> Path | None:
    latest = latest_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
    if latest is not None and job.resume is None:
        raise FileExistsError(
            f"{config.output_dir} already holds a training run ({latest.name}); pass --resume to "
            "continue it or choose another --output-dir")
    return latest


def run_training(job: TrainJob) -> tuple[TrainResult, Path | None]:
    """Train (or continue) the job; returns the result and the final model folder (``None``
    when the run paused before ``max_steps``)."""
    config = job.config
    _existing_run(job, config)
    negatives = load_hard_negatives(job.hard_negatives, job.hard_negatives_top) \
        if job.hard_negatives else None
    if negatives is not None and not config.hard_negatives_per_query:
        logger.warning("hard negatives given but train.hard_negatives_per_query is 0: unused")
    train = load_train_queries(job.queries, job.images, hard_negatives=negatives)
    passages = open_passages(job.passages, job.passage_images or
                             (job.images if not Path(job.passages).is_dir() else None))
    val = load_train_queries(job.val_queries, job.images) if job.val_queries else None
    val_ids = passages.ids() if val and job.val_all_passages else None
    logger.info("%d training queries, %d passages%s", len(train), len(passages),
                f", {len(val)} validation queries" if val else "")
    loaded = load_retriever(job.retriever)
    if loaded.note:
        logger.warning("%s", loaded.note)
    trainer = ReTTrainer(loaded.model, config, train, passages, val, val_ids)
    (Path(config.output_dir) / "job.json").write_text(json.dumps(asdict(job), indent=2))
    if job.resume is not None:
        folder = None if job.resume == "latest" else job.resume
        if not trainer.resume(folder) and folder is None:
            logger.info("nothing to resume in %s: starting from step 0", config.output_dir)
    result = trainer.train()
    if result.steps < config.max_steps:
        return result, None
    return result, _save_final(trainer, Path(config.output_dir) / "model",
                               _training_record(job, result))


def _data_digest(path: str | None) -> dict[str, Any] | None:
    """What a training input was: a file's digest, or a knowledge base's recorded one."""
    if not path:
        return None
    source = Path(path)
    if source.is_file():
        return {"path": str(source.resolve()), "digest": f"{DIGEST}:{file_digest(source)}"}
    if source.is_dir():
        with PassageStore.open(source, verify="none") as store:
            return {"path": str(source.resolve()), "digest": store.digest}
    return {"path": str(source), "digest": None}


def _training_record(job: TrainJob, result: TrainResult) -> dict[str, Any]:
    """training.json next to the final model: what its model card reports."""
    return {"job": asdict(job), "steps": result.steps, "final_loss": result.final_loss,
            "validation": result.validation, "seconds": result.seconds,
            "command": ["rag-vqa", *sys.argv[1:]] if Path(sys.argv[0]).name in
            ("rag-vqa", "__main__.py") else list(sys.argv),
            "data": {"queries": _data_digest(job.queries), "passages": _data_digest(job.passages),
                     "val_queries": _data_digest(job.val_queries)},
            "versions": {"rag-vqa": __version__, "torch": torch.__version__}}


def _save_final(trainer: ReTTrainer, folder: Path, record: dict[str, Any]) -> Path:
    """The trained retriever in the released layout with its training record, written
    atomically."""
    model: ReTRetriever = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.accelerator.is_main_process:
        tmp = folder.with_name(f".tmp-{folder.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        atomic_write_json(tmp / TRAINING_FILE, record, default=str)
        replace_folder(tmp, folder)
    trainer.accelerator.wait_for_everyone()
    return folder

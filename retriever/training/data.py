"""Training data: ReT JSONL queries (instruction, question, image_path, positive passage_id(s),
optional hard negatives) joined with their passages, and a collator that turns a batch into
the same tensors inference uses (through :class:`~retriever.processing_ret.ReTProcessor`)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..fileio import loads_json, read_jsonl_records, require_file
from ..images import ImageLoadError, load_image
from ..losses import label_ids
from ..processing_ret import ReTInputs, ReTProcessor, query_text

__all__ = ["TrainPassage", "TrainQuery", "PassageLookup", "JsonlPassages", "RetrievalPairs",
           "ReTCollator", "TrainBatch", "load_train_queries", "read_jsonl_rows",
           "TrainingDataError"]

logger = logging.getLogger(__name__)


class TrainingDataError(UserError, ValueError):
    """Training files that cannot be used; the message names file, line and field."""


@dataclass(frozen=True)
class TrainPassage:
    passage_id: str
    text: str
    image: Path | None = None


class PassageLookup(Protocol):
    """Where passages come from (a KB store adapter, or :class:`JsonlPassages`)."""

    def get(self, passage_id: str) -> TrainPassage: ...


@dataclass
class TrainQuery:
    data_id: str
    text: str                       # query_text(instruction, question), as ReT was trained
    image: Path | None
    positives: list[str]
    hard_negatives: list[str] = field(default_factory=list)
    label: str | None = None        # items with equal labels are positives of each other


def _resolve(root: Path | None, ref: str | None) -> Path | None:
    if not ref:
        return None
    path = Path(ref)
    if path.is_absolute() or ".." in path.parts:
        raise TrainingDataError(f"image path {ref!r} must be relative to the image root")
    return (root / path) if root else path


def read_jsonl_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("file:line", object)`` for every non-blank line; bad JSON names its line."""
    try:
        require_file(path, "JSONL file")
    except ValueError as exc:  # a folder, a FIFO: FileNotFoundError (missing) passes as it is
        raise TrainingDataError(str(exc)) from exc
    for number, row, error in read_jsonl_records(path, loads=loads_json):
        where = f"{path}:{number}"
        if error is not None:
            raise TrainingDataError(f"{where}: {error}") from error
        if not isinstance(row, dict):
            raise TrainingDataError(f"{where}: expected a JSON object")
        yield where, row


class JsonlPassages:
    """ReT JSONL passages (passage_id, passage_text, passage_image_path) held in memory."""

    def __init__(self, path: str | Path, image_root: str | Path | None = None) -> None:
        root = Path(image_root) if image_root else None
        self._passages: dict[str, TrainPassage] = {}
        for where, row in read_jsonl_rows(path):
            if row.get("passage_id") in (None, ""):
                raise TrainingDataError(f"{where}: missing field 'passage_id'")
            pid = str(row["passage_id"])
            self._passages[pid] = TrainPassage(pid, row.get("passage_text") or "",
                                               _resolve(root, row.get("passage_image_path")))

    def __len__(self) -> int:
        return len(self._passages)

    def get(self, passage_id: str) -> TrainPassage:
        try:
            return self._passages[passage_id]
        except KeyError:
            raise KeyError(f"unknown passage id {passage_id!r}") from None

    def ids(self) -> list[str]:
        return list(self._passages)


def load_train_queries(path: str | Path, image_root: str | Path | None = None,
                       hard_negatives: Mapping[str, Sequence[str]] | None = None
                       ) -> list[TrainQuery]:
    """ReT JSONL queries; hard negatives from the line's ``hard_negatives`` field and/or a map."""
    root = Path(image_root) if image_root else None
    out = []
    for where, row in read_jsonl_rows(path):
        for key in ("data_id", "passage_id"):
            if row.get(key) in (None, "", []):
                raise TrainingDataError(f"{where}: missing field {key!r}")
        positives = row["passage_id"]
        positives = [str(p) for p in (positives if isinstance(positives, list) else [positives])]
        data_id = str(row["data_id"])
        for key in ("instruction", "question"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise TrainingDataError(f"{where}: field {key!r} must be text")
        text = query_text(row.get("instruction"), row.get("question"))
        negatives = [str(n) for n in row.get("hard_negatives") or []]
        negatives += [str(n) for n in (hard_negatives or {}).get(data_id, [])]
        # mined lists often contain the positives themselves: never train against them
        negatives = [n for n in dict.fromkeys(negatives) if n not in positives]
        out.append(TrainQuery(data_id, text, _resolve(root, row.get("image_path")),
                              positives, negatives, row.get("entity_id") or positives[0]))
    return out


@dataclass
class TrainItem:
    query: TrainQuery
    query_image: Any
    passage: TrainPassage
    passage_image: Any
    negatives: list[tuple[TrainPassage, Any]]


class RetrievalPairs(Dataset):
    """(query, one positive passage, hard negatives) per query, images decoded. A query with
    several positives uses one chosen by a seeded draw per epoch; unreadable images are dropped
    (that item is then text-only) and counted."""

    def __init__(self, queries: Sequence[TrainQuery], passages: PassageLookup,
                 hard_negatives_per_query: int = 0, seed: int = 0) -> None:
        self.queries = list(queries)
        self.passages = passages
        self.hard_negatives_per_query = hard_negatives_per_query
        self.seed = seed
        self.epoch = 0
        self.bad_images = 0
        unknown = []
        for q in self.queries:  # fail fast on ids the passage source does not know
            for pid in (*q.positives, *q.hard_negatives):
                try:
                    passages.get(pid)
                except KeyError:
                    unknown.append(f"{pid!r} (query {q.data_id})")
        if unknown:
            raise TrainingDataError(f"{len(unknown)} passage id(s) of the training queries are "
                                    f"not in the passages: {', '.join(unknown[:5])}")

    def __len__(self) -> int:
        return len(self.queries)

    def _image(self, path: Path | None) -> Any:
        if path is None:
            return None
        try:
            return load_image(path)
        except ImageLoadError as exc:
            self.bad_images += 1
            logger.warning("training image skipped: %s", exc)
            return None

    def __getitem__(self, index: int) -> TrainItem:
        query = self.queries[index]
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        passage = self.passages.get(rng.choice(query.positives))
        negatives = []
        if self.hard_negatives_per_query and query.hard_negatives:
            chosen = rng.sample(query.hard_negatives,
                                min(self.hard_negatives_per_query, len(query.hard_negatives)))
            negatives = [(p, self._image(p.image)) for p in map(self.passages.get, chosen)]
        return TrainItem(query, self._image(query.image), passage, self._image(passage.image),
                         negatives)


@dataclass
class TrainBatch:
    query: ReTInputs
    passage: ReTInputs
    query_labels: torch.Tensor
    passage_labels: torch.Tensor
    negatives: ReTInputs | None = None
    negative_labels: torch.Tensor | None = None
    query_ids: list[str] = field(default_factory=list)
    passage_ids: list[str] = field(default_factory=list)
    negative_ids: list[str] = field(default_factory=list)


class ReTCollator:
    """Batches items through the inference processor. Labels: each query's label (its
    ``entity_id``, else its first positive passage id) is also the label of the passage drawn
    for it, so queries sharing an entity or first positive are positives of each other's
    passages (multi-positive targets); hard negatives are labelled by their passage id."""

    def __init__(self, processor: ReTProcessor, document_processor: ReTProcessor | None = None
                 ) -> None:
        self.processor = processor
        self.document_processor = document_processor or processor

    def __call__(self, items: Sequence[TrainItem]) -> TrainBatch:
        queries = self.processor([i.query.text for i in items], [i.query_image for i in items])
        passages = self.document_processor([i.passage.text for i in items],
                                           [i.passage_image for i in items])
        # a passage's label is the label of the query it was drawn for
        labels = label_ids([i.query.label for i in items])
        negatives = [n for i in items for n in i.negatives]
        batch = TrainBatch(queries, passages, labels, labels.clone(),
                           query_ids=[i.query.data_id for i in items],
                           passage_ids=[i.passage.passage_id for i in items])
        if negatives:
            batch.negatives = self.document_processor([p.text for p, _ in negatives],
                                                      [img for _, img in negatives])
            batch.negative_ids = [p.passage_id for p, _ in negatives]
            batch.negative_labels = label_ids(batch.negative_ids)
        return batch

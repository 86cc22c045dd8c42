"""Question sets users bring, read as they are (data-formats.md): InfoSeek JSONL, Encyclopedic-VQA
CSV, and ReT-M2KR / ReT JSONL queries; plus finding each question's image under an image root.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_vqa.kb.imagerefs import resolve_image

from .metrics.common import read_jsonl

__all__ = ["EvalQuestion", "DatasetError", "DATASETS", "load_questions", "ImageLocator"]

DATASETS = ("infoseek", "evqa", "ret-jsonl")
_IMAGE_SUFFIXES = (".jpg", ".JPEG", ".jpeg", ".JPG", ".png", ".PNG", ".webp")


class DatasetError(ValueError):
    """A question file that cannot be read; the message names file, line/row and field."""


@dataclass
class EvalQuestion:
    data_id: str
    question: str
    image: str | None                       # an image id (InfoSeek, E-VQA) or a relative path
    answers: list[Any] = field(default_factory=list)
    question_type: str | None = None
    split: str | None = None
    instruction: str | None = None          # ReT JSONL carries one per query
    positives: list[str] = field(default_factory=list)       # positive passage ids
    gold_articles: list[str] = field(default_factory=list)   # Wikidata QIDs / Wikipedia URLs


def _need(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row or row[key] is None:
        raise DatasetError(f"{where}: missing field {key!r}")
    return row[key]


def _infoseek(path: Path, qtypes: Path | None, withkb: Path | None) -> list[EvalQuestion]:
    types = {str(r["data_id"]): r.get("question_type") for _, r in read_jsonl(qtypes)} if qtypes \
        else {}
    entities = {str(r["data_id"]): r.get("entity_id") for _, r in read_jsonl(withkb)} if withkb \
        else {}
    out = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        data_id = str(_need(row, "data_id", where))
        entity = row.get("entity_id") or entities.get(data_id)
        answers = row.get("answer") or []
        out.append(EvalQuestion(
            data_id=data_id, question=str(_need(row, "question", where)),
            image=str(_need(row, "image_id", where)),
            answers=list(answers) if isinstance(answers, list) else [answers],
            question_type=types.get(data_id), split=row.get("data_split"),
            gold_articles=[entity] if entity else []))
    return out


def _evqa(path: Path) -> list[EvalQuestion]:
    out = []
    # utf-8-sig like the scorer's reader (eval.metrics.evqa): a BOM must not hide a column
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for field_name in ("question", "answer", "question_type", "dataset_image_ids"):
            if field_name not in (reader.fieldnames or []):
                raise DatasetError(f"{path}: no column {field_name!r} (is this an E-VQA CSV?)")
        for index, row in enumerate(reader):
            images = [i for i in (row.get("dataset_image_ids") or "").split("|") if i]
            urls = [u for u in (row.get("wikipedia_url") or "").split("|") if u]
            out.append(EvalQuestion(
                data_id=str(index), question=row["question"], image=images[0] if images else None,
                answers=row["answer"].split("|"), question_type=row["question_type"],
                split=row.get("encyclopedic_vqa_split"), gold_articles=urls))
    return out


def _ret_jsonl(path: Path) -> list[EvalQuestion]:
    out = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        positives = row.get("passage_id")
        positives = positives if isinstance(positives, list) else (
            [positives] if positives is not None else [])
        answers = row.get("answer")
        answers = answers if isinstance(answers, list) else ([answers] if answers else [])
        question = row.get("question")
        out.append(EvalQuestion(
            data_id=str(_need(row, "data_id", where)),
            question="" if question is None else str(question),
            image=row.get("image_path"), answers=answers, instruction=row.get("instruction"),
            positives=[str(p) for p in positives]))
    return out


def load_questions(dataset: str, path: str | Path, *, qtypes: str | Path | None = None,
                   withkb: str | Path | None = None) -> list[EvalQuestion]:
    """Questions in file order. ``qtypes`` / ``withkb``: InfoSeek's question-type and entity files."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"question file {path} does not exist")
    if dataset == "infoseek":
        return _infoseek(path, Path(qtypes) if qtypes else None, Path(withkb) if withkb else None)
    if dataset == "evqa":
        return _evqa(path)
    if dataset == "ret-jsonl":
        return _ret_jsonl(path)
    raise DatasetError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


class ImageLocator:
    """Finds a question's image under the image root.

    InfoSeek: ``<root>/<image_id>.jpg`` (or .JPEG / .png ...). E-VQA: ``<root>/<id>.jpg``, the
    Google Landmarks v2 layout ``<root>/<a>/<b>/<c>/<id>.jpg``, or ``<root>/<dataset>/<id>.jpg``.
    ReT JSONL: the relative ``image_path``. An optional JSON map {image id: relative path} wins
    over all of these. Paths that would leave the root are refused.
    """

    def __init__(self, dataset: str, root: str | Path, image_map: str | Path | None = None
                 ) -> None:
        self.dataset = dataset
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist")
        self.map: dict[str, str] = {}
        if image_map:
            with open(image_map, encoding="utf-8") as handle:
                self.map = {str(k): str(v) for k, v in json.load(handle).items()}

    def candidates(self, ref: str) -> list[str]:
        if ref in self.map:
            return [self.map[ref]]
        if self.dataset == "ret-jsonl":
            return [ref]
        stems = [ref]
        if self.dataset == "evqa" and len(ref) >= 3:
            stems.append(f"{ref[0]}/{ref[1]}/{ref[2]}/{ref}")
        names = [ref] if Path(ref).suffix else []
        return names + [stem + suffix for stem in stems for suffix in _IMAGE_SUFFIXES]

    def find(self, ref: str | None) -> Path | None:
        """The image file, or None when no candidate exists (UnsafeImagePath for escapes)."""
        if not ref:
            return None
        for candidate in self.candidates(ref):
            found = resolve_image(candidate, self.root)
            if found is not None:
                return found
        return None

"""Question sets users bring, read as they are (data-formats.md): InfoSeek JSONL, Encyclopedic-VQA
CSV, ReT-M2KR / ReT JSONL queries and M2KR ``<NAME>_data`` files (:mod:`eval.m2kr`); plus finding
each question's image under an image root.

Every record is checked before the first question is asked, by one rule for all formats:

- a record that cannot be identified (not JSON, not an object, no usable ``data_id``) or that
  repeats an earlier ``data_id`` is a :class:`DatasetError` naming the file and line, raised for
  the whole file at once (``skip_bad`` skips and counts the unidentifiable ones instead);
- a record that is identified but has a field of the wrong type (a dict as the question, an int
  as the image path ...) becomes an :class:`EvalQuestion` whose ``error`` names file, line and
  field: the run records it as a failed question, and its neighbours are unaffected.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_vqa.kb.errors import UnsafeImagePath
from rag_vqa.kb.imagerefs import check_image_ref, locate_image
from rag_vqa.kb.records import id_problem
from retriever.errors import UserError
from retriever.fileio import (
    JSONRecordError,
    check_json_value,
    loads_json,
    loads_record,
    path_kind,
    read_jsonl_records,
    require_file,
)
from retriever.images import ImageLoadError

__all__ = ["EvalQuestion", "DatasetError", "DATASETS", "load_questions", "ImageLocator",
           "QuestionSet", "read_questions", "MAX_LISTED_PROBLEMS"]

logger = logging.getLogger(__name__)

DATASETS = ("infoseek", "evqa", "ret-jsonl", "m2kr")
MAX_LISTED_PROBLEMS = 10
_IMAGE_SUFFIXES = (".jpg", ".JPEG", ".jpeg", ".JPG", ".png", ".PNG", ".webp")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class DatasetError(UserError, ValueError):
    """A question file that cannot be read; the message names file, line/row and field."""


class _FieldError(Exception):
    """One field of one record is unusable (internal: becomes EvalQuestion.error)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"field {name!r}: {reason}")


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
    where: str = ""                         # "file:line" (or "file:line (row N)" for CSV)
    error: str | None = None                # why it cannot be asked: a failed question


@dataclass
class QuestionSet:
    """Questions in file order, and how many unidentifiable records ``skip_bad`` left out."""

    questions: list[EvalQuestion]
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


# -- typed fields ------------------------------------------------------------------------------

def _type(value: Any) -> str:
    return type(value).__name__


def _text(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = row.get(name)
    if value is None:
        if required:
            raise _FieldError(name, "missing required field")
        return None
    if not isinstance(value, str):
        raise _FieldError(name, f"expected a string, got {_type(value)}")
    return value


def _id(value: Any, name: str) -> str:
    problem = id_problem(value)
    if problem:
        raise _FieldError(name, problem)
    return str(value)


def _ids(value: Any, name: str) -> list[str]:
    """One id or a list of ids (ReT's passage_id); null is none."""
    if value is None:
        return []
    return [_id(v, name) for v in value] if isinstance(value, list) else [_id(value, name)]


def _answers(value: Any, name: str) -> list[str]:
    """Answers as strings: one or a list of strings or numbers (InfoSeek numerical answers)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _FieldError(name, f"expected strings or numbers, got {_type(item)}")
    return [item if isinstance(item, str) else str(item) for item in items]


def _image(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _FieldError(name, f"expected a string, got {_type(value)}")
    try:
        check_image_ref(value)
    except UnsafeImagePath as exc:
        raise _FieldError(name, exc.reason) from None
    return value


# -- the formats --------------------------------------------------------------------------------

def _infoseek(row: dict[str, Any], q: EvalQuestion, types: dict[str, str | None],
              entities: dict[str, str | None]) -> None:
    q.question = _text(row, "question", required=True) or ""
    image = _image(row.get("image_id"), "image_id")
    if image is None:
        raise _FieldError("image_id", "missing required field")
    q.image = image
    q.answers = _answers(row.get("answer"), "answer")
    q.split = _text(row, "data_split")
    entity = _text(row, "entity_id") or entities.get(q.data_id)
    q.gold_articles = [entity] if entity else []
    q.question_type = types.get(q.data_id)


def _ret(row: dict[str, Any], q: EvalQuestion) -> None:
    q.question = _text(row, "question") or ""
    q.image = _image(row.get("image_path"), "image_path")
    q.instruction = _text(row, "instruction")
    q.positives = _ids(row.get("passage_id"), "passage_id")
    q.answers = _answers(row.get("answer"), "answer")


def _jsonl(path: Path, fill: Callable[[dict[str, Any], EvalQuestion], None],
           unusable: list[str], rows: Iterator[tuple[str, Any, Exception | None]] | None = None,
           id_fields: tuple[str, ...] = ("data_id",)) -> Iterator[EvalQuestion]:
    """Questions of a JSONL file (or of ``rows``: (where, record, error)); the id is the first
    of ``id_fields`` a record has; records without a usable one go to ``unusable``."""
    if rows is None:
        rows = ((f"{path}:{number}", row, error)
                for number, row, error in read_jsonl_records(path, loads=loads_json))
    for where, row, error in rows:
        if error is None and not isinstance(row, dict):
            error = JSONRecordError(f"expected a JSON object, got {_type(row)}")
        data_id = None
        if error is None:
            try:
                id_field = next((f for f in id_fields if row.get(f) is not None), id_fields[0])
                if row.get(id_field) is None:
                    raise _FieldError(id_field, "missing required field")
                data_id = _id(row[id_field], id_field)
            except _FieldError as exc:
                error = exc
        if data_id is None:
            unusable.append(f"{where}: {error}")
            continue
        question = EvalQuestion(data_id=data_id, question="", image=None, where=where)
        try:
            check_json_value(row)
            fill(row, question)
        except (JSONRecordError, _FieldError) as exc:
            question.error = f"{where}: {exc}"
        yield question


def _evqa(path: Path) -> Iterator[EvalQuestion]:
    """Questions of an E-VQA CSV, ``data_id`` = the 0-based row (as the official evaluation)."""
    # utf-8-sig like the scorer's reader (eval.metrics.evqa): a BOM must not hide a column;
    # undecodable bytes become surrogates, refused per row
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            columns = reader.fieldnames or []
        except csv.Error as exc:
            raise DatasetError(f"{path}: unreadable CSV header ({exc})") from None
        for name in ("question", "answer", "question_type", "dataset_image_ids"):
            if name not in columns:
                raise DatasetError(f"{path}: no column {name!r} (is this an E-VQA CSV?)")
        index = 0
        while True:
            question = EvalQuestion(data_id=str(index), question="", image=None)
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # the reader goes on with the next row
                question.where = f"{path}:{reader.line_num} (row {index})"
                question.error = f"{question.where}: unreadable CSV row ({exc})"
            else:
                question.where = f"{path}:{reader.line_num} (row {index})"
                try:
                    _evqa_row(row, question)
                except _FieldError as exc:
                    question.error = f"{question.where}: {exc}"
            index += 1
            yield question


def _evqa_row(row: dict[str | None, Any], q: EvalQuestion) -> None:
    if None in row:
        raise _FieldError("(extra)", "the row has more fields than the header")
    for name, value in row.items():
        if value is None:
            raise _FieldError(name, "the row has fewer fields than the header")
        if _UNDECODABLE.search(value):
            raise _FieldError(name, "not valid UTF-8")
    q.question, q.question_type = row["question"], row["question_type"]
    q.answers = row["answer"].split("|")
    images = [i for i in row["dataset_image_ids"].split("|") if i]
    q.image = _image(images[0], "dataset_image_ids") if images else None
    q.split = row.get("encyclopedic_vqa_split")
    q.gold_articles = [u for u in (row.get("wikipedia_url") or "").split("|") if u]


def _side_file(path: Path, what: str, value_field: str) -> dict[str, str | None]:
    """{data_id: value} of an InfoSeek qtype / withkb file; any bad record is fatal (they are
    reference data), named by file, line and field."""
    out: dict[str, str | None] = {}
    problems: list[str] = []
    try:
        require_file(path, what)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from None
    for number, row, error in read_jsonl_records(path):
        try:
            if error is not None:
                raise error
            if not isinstance(row, dict):
                raise JSONRecordError(f"expected a JSON object, got {_type(row)}")
            if row.get("data_id") is None:
                raise _FieldError("data_id", "missing required field")
            out[_id(row["data_id"], "data_id")] = _text(row, value_field)
        except (JSONRecordError, _FieldError) as exc:
            problems.append(f"{path}:{number}: {exc}")
    _raise_problems(problems, f"{what} {path}")
    return out


def _raise_problems(problems: list[str], what: str, hint: str = "",
                    noun: str = "unusable record(s)") -> None:
    """One DatasetError listing the first problems of a whole file (and how many there are)."""
    if not problems:
        return
    shown = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" \
        if len(problems) > MAX_LISTED_PROBLEMS else ""
    raise DatasetError(f"{what}: {len(problems)} {noun}:\n  {shown}{more}{hint}")


def _duplicates(questions: list[EvalQuestion]) -> list[str]:
    lines: dict[str, list[str]] = {}
    for q in questions:
        lines.setdefault(q.data_id, []).append(q.where.rsplit(":", 1)[-1])
    return [f"data_id {data_id!r} on lines {', '.join(found)}"
            for data_id, found in lines.items() if len(found) > 1]


def read_questions(dataset: str, path: str | Path, *, qtypes: str | Path | None = None,
                   withkb: str | Path | None = None, skip_bad: bool = False) -> QuestionSet:
    """Every question of the file, checked (see the module docstring). ``qtypes`` / ``withkb``:
    InfoSeek's question-type and entity files; ``skip_bad`` skips unusable records."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    path = Path(path)
    try:
        require_file(path, "question file")
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from None
    unusable: list[str] = []
    if dataset == "infoseek":
        types = _side_file(Path(qtypes), "question type file", "question_type") if qtypes else {}
        entities = _side_file(Path(withkb), "entity file", "entity_id") if withkb else {}
        questions = list(_jsonl(path, lambda r, q: _infoseek(r, q, types, entities), unusable))
    elif dataset == "evqa":
        questions = list(_evqa(path))
    elif dataset == "m2kr":
        from .m2kr import m2kr_questions

        questions = m2kr_questions(path, unusable)
    else:
        questions = list(_jsonl(path, _ret, unusable))
    if not skip_bad:
        _raise_problems(unusable, f"question file {path}", "\nFix them, or pass --skip-bad to "
                        "leave them out (they are counted in the report).")
    _raise_problems(_duplicates(questions), f"question file {path}",
                    "\nEvery question needs its own data_id: a repeated one would overwrite the "
                    "other's prediction.", noun="repeated data_id(s)")
    if unusable:
        logger.warning("%s: %d unusable record(s) skipped (--skip-bad), e.g. %s", path,
                       len(unusable), unusable[0])
    return QuestionSet(questions, len(unusable), unusable[:MAX_LISTED_PROBLEMS])


def load_questions(dataset: str, path: str | Path, *, qtypes: str | Path | None = None,
                   withkb: str | Path | None = None, skip_bad: bool = False
                   ) -> list[EvalQuestion]:
    """Questions in file order (see :func:`read_questions`)."""
    return read_questions(dataset, path, qtypes=qtypes, withkb=withkb,
                          skip_bad=skip_bad).questions


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
        kind = path_kind(self.root)
        if kind != "a folder":
            raise DatasetError(f"image folder {self.root} does not exist" if kind == "missing"
                               else f"image folder {self.root} is {kind}, not a folder")
        self.map = _load_image_map(Path(image_map)) if image_map else {}

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
        """The image file, or None when nothing is there. Something there that is not a file
        (a folder, a FIFO, a device) is an ImageLoadError saying what it is, and is never
        opened; a reference that would leave the root is an UnsafeImagePath."""
        if not ref:
            return None
        odd = None
        for candidate in self.candidates(ref):
            path = locate_image(candidate, self.root)
            kind = path_kind(path)
            if kind == "file":
                return path
            if kind != "missing" and odd is None:
                odd = ImageLoadError(str(path), f"it is {kind}, not an image file")
        if odd is not None:
            raise odd
        return None


def _load_image_map(path: Path) -> dict[str, str]:
    """The --image-map file, checked whole: a JSON object of id -> safe relative path."""
    try:
        require_file(path, "image map")
        value = check_json_value(loads_record(path.read_bytes()))
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from None
    except (JSONRecordError, ValueError) as exc:
        raise DatasetError(f"image map {path}: {exc}") from None
    if not isinstance(value, dict):
        raise DatasetError(f"image map {path}: expected a JSON object {{image id: path}}, "
                           f"got {_type(value)}")
    problems = []
    for key, target in value.items():
        try:
            _id(key, "key")
            if not isinstance(target, str):
                raise _FieldError(key, f"expected a path string, got {_type(target)}")
            check_image_ref(target)
        except _FieldError as exc:
            problems.append(f"entry {key[:80]!r}: {exc}")
        except UnsafeImagePath as exc:
            problems.append(f"entry {key[:80]!r}: {exc}")
    _raise_problems(problems, f"image map {path}")
    return value

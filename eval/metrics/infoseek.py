"""InfoSeek scoring, reproducing the InfoSeek authors' official scorer number for number
(quirks included: a numerical prediction without a number is the range [0, 0], the split score
counts the predictions actually given, duplicates count twice), plus the coverage report and
per-question details the official scorer lacks."""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    Coverage,
    MetricsInputError,
    Prediction,
    build_coverage,
    check_coverage,
    coerce_id,
    normalize_prediction_records,
    percent,
    read_jsonl,
)

__all__ = [
    "normalize_answer", "parse_numerical", "numerical_correct", "InfoSeekReference",
    "load_infoseek_references", "score_infoseek", "InfoSeekResult", "InfoSeekSplitResult",
    "InfoSeekDetail", "harmonic_mean", "SPLITS",
]

logger = logging.getLogger(__name__)

SPLITS = ("unseen_question", "unseen_entity")
QUESTION_TYPES = ("String", "Numerical", "Time")
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?")


# --------------------------------------------------------------------------- answer matching

def normalize_answer(text: str) -> str:
    """Lowercase, drop ASCII punctuation, blank out whole-word articles, collapse whitespace
    (in this order: "a.m." becomes "am" and survives, "a" alone disappears)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _space_ranges(text: str) -> str:
    """'9-10' -> '9 - 10': a hyphen right after a digit separates two numbers."""
    return "".join(" - " if ch == "-" and i >= 1 and text[i - 1].isdigit() else ch
                   for i, ch in enumerate(text))


def parse_numerical(text: str) -> float | list[float]:
    """A numerical prediction as the official scorer reads it: the first two numbers a <= b give
    the range [a, b], a > b gives the single value a, one number gives itself, none gives the
    range [0, 0] (which counts as correct whenever 0 lies in the reference range)."""
    numbers: list[float] = []
    for raw in _NUMBER.findall(_space_ranges(text)):
        token = raw.replace(",", "").strip(".")
        if token.count(".") > 1:
            token = token.split(".")[0]
        try:
            numbers.append(float(token))
        except ValueError:
            # only "-.1.2"-like input gets here; the official scorer crashes on it
            raise ValueError(f"cannot read a number from {raw!r} in the numerical prediction "
                             f"{text!r} (the official InfoSeek scorer fails on it too)") from None
    numbers = numbers[:2]
    if len(numbers) == 2:
        first, second = numbers
        return [first, second] if first <= second else first
    if len(numbers) == 1:
        return numbers[0]
    return [0.0, 0.0]


def _range_iou(pred: Sequence[float], ref: Sequence[float]) -> float:
    min1, max1 = min(pred), max(pred)
    min2, max2 = min(ref), max(ref)
    overlap = max(0.0, min(max1, max2) - max(min1, min2))
    len1 = (max1 - min1) + 1e-12
    len2 = (max2 - min2) + 1e-12
    denominator = len1 + len2 - overlap
    return overlap / denominator if denominator != 0 else 0


def numerical_correct(pred: float | Sequence[float], lo_hi: Sequence[float]) -> bool:
    """A value is correct inside [lo, hi]; a range when both ends are inside, or else when its
    IoU with [lo, hi] reaches 0.5 (less 1e-12, as the official scorer allows)."""
    lo, hi = lo_hi
    if not isinstance(pred, (list, tuple)):
        return lo <= pred <= hi
    a, b = pred
    if lo <= a <= hi and lo <= b <= hi:
        return True
    return _range_iou(pred, lo_hi) >= 0.5 - 1e-12


# --------------------------------------------------------------------------- references

@dataclass
class InfoSeekReference:
    """One InfoSeek question: String/Time questions carry ``answers`` (the answer_eval aliases),
    Numerical ones ``answer_range`` (lo, hi)."""

    data_id: str
    question_type: str
    data_split: str
    answers: list[str] = field(default_factory=list)
    answer_range: tuple[float, float] | None = None

    @property
    def split(self) -> str:
        return "unseen_question" if self.data_split.endswith("unseen_question") \
            else "unseen_entity"


def _canonical_type(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MetricsInputError(f"{where}: 'question_type' must be a string")
    for name in QUESTION_TYPES:
        if value.lower() == name.lower():
            return name
    # the official scorer treats every other type as String
    logger.warning("%s: unknown question_type %r scored as String (as the official scorer "
                   "does)", where, value)
    return "String"


def _load_qtypes(path: str | Path) -> dict[str, str]:
    qtypes: dict[str, str] = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key in ("data_id", "question_type"):
            if key not in obj:
                raise MetricsInputError(f"{where}: missing required field {key!r}")
        qtypes[coerce_id(obj["data_id"], where)] = _canonical_type(obj["question_type"], where)
    return qtypes


def _answer_range(answer_eval: Any, where: str) -> tuple[float, float]:
    item = answer_eval[0] if isinstance(answer_eval, list) and answer_eval else answer_eval
    if not isinstance(item, dict) or "range" not in item:
        raise MetricsInputError(f"{where}: a Numerical question needs answer_eval "
                                f"[{{\"wikidata\": v, \"range\": [lo, hi]}}]")
    bounds = item["range"]
    if not isinstance(bounds, (list, tuple)) or len(bounds) < 2:
        raise MetricsInputError(f"{where}: answer_eval 'range' must hold two numbers")
    try:  # the official scorer goes through str() before float()
        lo, hi = (float(str(v)) for v in list(bounds)[:2])
    except ValueError:
        raise MetricsInputError(f"{where}: answer_eval 'range' must hold two numbers") from None
    return lo, hi


def _aliases(answer_eval: Any, where: str) -> list[str]:
    if not isinstance(answer_eval, list) or not answer_eval \
            or not all(isinstance(a, str) for a in answer_eval):
        raise MetricsInputError(f"{where}: answer_eval must be a non-empty list of strings")
    return list(answer_eval)


def load_infoseek_references(reference_path: str | Path, qtype_path: str | Path
                             ) -> dict[str, InfoSeekReference]:
    """``infoseek_val.jsonl`` joined with ``infoseek_val_qtype.jsonl``; every reference id must
    have a question type. A repeated data_id keeps the last line (as the official scorer)."""
    qtypes = _load_qtypes(qtype_path)
    refs: dict[str, InfoSeekReference] = {}
    for lineno, obj in read_jsonl(reference_path):
        where = f"{reference_path}:{lineno}"
        for key in ("data_id", "answer_eval", "data_split"):
            if key not in obj:
                raise MetricsInputError(f"{where}: missing required field {key!r}")
        data_id = coerce_id(obj["data_id"], where)
        if data_id not in qtypes:
            raise MetricsInputError(f"{where}: data_id {data_id!r} is not in the question type "
                                    f"file {qtype_path}")
        if not isinstance(obj["data_split"], str):
            raise MetricsInputError(f"{where}: 'data_split' must be a string")
        qtype = qtypes[data_id]
        ref = InfoSeekReference(data_id=data_id, question_type=qtype,
                                data_split=obj["data_split"])
        if qtype == "Numerical":
            ref.answer_range = _answer_range(obj["answer_eval"], where)
        else:
            ref.answers = _aliases(obj["answer_eval"], where)
        if data_id in refs:
            logger.warning("%s: data_id %r repeated; the last line wins", where, data_id)
        refs[data_id] = ref
    return refs


# --------------------------------------------------------------------------- scoring

@dataclass
class InfoSeekDetail:
    data_id: str
    correct: int
    type: str
    split: str
    prediction: str
    normalized_prediction: Any          # string, or the parsed number / [lo, hi] for Numerical
    normalized_references: Any          # normalised aliases, or [lo, hi] for Numerical

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InfoSeekSplitResult:
    """One split, as the official scorer reports it (percent, 2 decimals) plus counts."""

    score: float
    score_time: float
    score_num: float
    score_string: float
    count: int
    count_time: int
    count_num: int
    count_string: int
    correct: int

    def to_dict(self) -> dict[str, Any]:
        """The official scorer's keys, plus the number of scored predictions."""
        return {"score": self.score, "score_time": self.score_time, "score_num": self.score_num,
                "score_string": self.score_string, "count": self.count}


@dataclass
class InfoSeekResult:
    final_score: float          # harmonic mean of the two rounded split scores (official)
    overall_accuracy: float     # plain accuracy over all scored predictions (not official)
    unseen_question: InfoSeekSplitResult
    unseen_entity: InfoSeekSplitResult
    coverage: Coverage
    details: list[InfoSeekDetail] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"final_score": self.final_score, "overall_accuracy": self.overall_accuracy,
                "unseen_question": self.unseen_question.to_dict(),
                "unseen_entity": self.unseen_entity.to_dict(),
                "coverage": self.coverage.to_dict()}


def harmonic_mean(*values: float) -> float:
    """The official scorer's harmonic mean: a zero becomes 1e-12 (so the mean is ~0)."""
    safe = [v if v != 0 else 1e-12 for v in values]
    return len(safe) / sum(1.0 / v for v in safe)


def _kind(question_type: str) -> str:
    """The official dispatch: 'time' and 'numerical' (any case), everything else String."""
    lowered = question_type.lower()
    return "Time" if lowered == "time" else "Numerical" if lowered == "numerical" else "String"


def _score_one(pred: str, ref: InfoSeekReference, kind: str) -> tuple[bool, Any, Any]:
    if kind == "Numerical":
        if ref.answer_range is None:
            raise ValueError("a Numerical question needs answer_range (lo, hi)")
        parsed = parse_numerical(pred)
        return numerical_correct(parsed, ref.answer_range), parsed, list(ref.answer_range)
    if not ref.answers:
        raise ValueError("the reference has no answer_eval alias")
    norm = normalize_answer(pred)
    aliases = [normalize_answer(a) for a in ref.answers]
    return max(norm == a for a in aliases), norm, aliases


def _split_result(details: Sequence[InfoSeekDetail]) -> InfoSeekSplitResult:
    by_type = {t: [d.correct for d in details if d.type == t] for t in QUESTION_TYPES}
    correct = sum(d.correct for d in details)

    def score(values: Sequence[int]) -> float:
        return round(percent(sum(values), len(values)), 2)

    return InfoSeekSplitResult(
        score=round(percent(correct, len(details)), 2), score_time=score(by_type["Time"]),
        score_num=score(by_type["Numerical"]), score_string=score(by_type["String"]),
        count=len(details), count_time=len(by_type["Time"]),
        count_num=len(by_type["Numerical"]), count_string=len(by_type["String"]),
        correct=correct)


def score_infoseek(predictions: Iterable[Prediction | Mapping[str, Any]],
                   references: Mapping[str, InfoSeekReference],
                   allow_missing: bool = False) -> InfoSeekResult:
    """Score predictions in their given order, exactly as the official scorer: unknown ids are
    skipped, a duplicated id is scored every time it appears. Missing predictions raise
    MissingPredictionsError unless ``allow_missing``."""
    preds = normalize_prediction_records(predictions)
    ref_ids = list(references)
    coverage = build_coverage(preds, ref_ids, {r: references[r].split for r in ref_ids}, SPLITS)
    check_coverage(coverage, allow_missing, "InfoSeek")

    details: list[InfoSeekDetail] = []
    for p in preds:
        ref = references.get(p.data_id)
        if ref is None:
            continue
        kind = _kind(ref.question_type)
        try:
            ok, norm_pred, norm_refs = _score_one(p.prediction, ref, kind)
        except ValueError as exc:
            raise ValueError(f"InfoSeek data_id {p.data_id!r}: {exc}") from None
        details.append(InfoSeekDetail(p.data_id, int(ok), kind, ref.split, p.prediction,
                                      norm_pred, norm_refs))

    splits = {s: _split_result([d for d in details if d.split == s]) for s in SPLITS}
    final = round(harmonic_mean(*(splits[s].score for s in SPLITS)), 2)
    overall = round(percent(sum(d.correct for d in details), len(details)), 2)
    return InfoSeekResult(final_score=final, overall_accuracy=overall,
                          unseen_question=splits["unseen_question"],
                          unseen_entity=splits["unseen_entity"],
                          coverage=coverage, details=details)

"""Encyclopedic-VQA scoring, reproducing the E-VQA authors' evaluation (google-research
``encyclopedic_vqa/evaluation_utils.py``): exact match after their answer preprocessing, list
IoU for multi_answer questions, max over the '|' alternatives, and optionally the BEM fallback.
Accuracy is the mean question score ("average score over all of its examples"), in percent."""

from __future__ import annotations

import csv
import logging
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .common import (
    Coverage,
    MetricsInputError,
    Prediction,
    build_coverage,
    check_coverage,
    normalize_prediction_records,
    percent,
)
from .evqa_tables import CONTRACTIONS, DIGIT_MAP

__all__ = [
    "QUESTION_TYPES", "preprocess_answer", "single_answer_em", "multi_answer_em",
    "EVQAReference", "load_evqa_references", "score_evqa", "EVQAResult", "EVQAAccuracy",
    "EVQADetail", "EquivalenceScorer",
]

logger = logging.getLogger(__name__)

QUESTION_TYPES = ("templated", "automatic", "multi_answer", "2_hop")
_PUNCTUATION = frozenset(string.punctuation + "‘’´`_")
_ARTICLES = re.compile(r"\b(the answer is|a|an|the)\b")
_LLM_PREFIX = "<extra_id_0> "


# --------------------------------------------------------------------------- answer matching

def preprocess_answer(answer: str) -> str:
    """The official preprocessing, step for step (the order matters: "3.0" -> "30", the
    prefix check happens on the stripped lowercase text and then removes every occurrence)."""
    answer = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    if answer.startswith(_LLM_PREFIX):
        answer = answer.replace(_LLM_PREFIX, "")
    answer = "".join(ch for ch in answer if ch not in _PUNCTUATION)
    answer = _ARTICLES.sub(" ", answer)
    words = []
    for word in answer.split():
        word = DIGIT_MAP.get(word, word)
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(" ".join(words).split())


def single_answer_em(reference: str, candidate: str) -> bool:
    """Exact match after preprocessing; a reference that preprocesses to "" is an error."""
    ref = preprocess_answer(reference)
    if not ref:
        raise ValueError(f"reference answer {reference!r} is empty after preprocessing")
    return ref == preprocess_answer(candidate)


def _reference_items(reference: str) -> list[str]:
    items = [a for a in (preprocess_answer(x) for x in reference.split("&&")) if a]
    if not items:
        raise ValueError(f"multi_answer reference {reference!r} has no item left after "
                         "preprocessing")
    return items


def _candidate_items(candidate: str) -> list[str]:
    pieces = candidate.replace(" and ", ",").replace(" & ", ",").split(",")
    return [a for a in (preprocess_answer(x) for x in pieces) if a]


def _items_match(ref_items: Sequence[str], cand_items: Sequence[str],
                 threshold: float = 0.5) -> bool:
    ref_set, cand_set = set(ref_items), set(cand_items)
    return len(ref_set & cand_set) / len(ref_set | cand_set) >= threshold


def multi_answer_em(reference: str, candidate: str, threshold: float = 0.5) -> bool:
    """Set IoU of the '&&' reference items and the candidate's items (split on ',', ' and ',
    ' & ') reaches ``threshold``."""
    return _items_match(_reference_items(reference), _candidate_items(candidate), threshold)


# --------------------------------------------------------------------------- references

@dataclass
class EVQAReference:
    """One CSV row; ``data_id`` is its 0-based row number as a string."""

    data_id: str
    question: str
    answers: list[str]          # answer.split('|'): alternatives, each scored, max kept
    question_type: str

    @property
    def single_hop(self) -> bool:
        return self.question_type != "2_hop"


def load_evqa_references(csv_path: str | Path) -> dict[str, EVQAReference]:
    """Read test.csv / val.csv (quoted fields with commas and newlines are fine); the question
    type must be one of the four E-VQA types."""
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return _read_evqa_references(path)
    except UnicodeDecodeError as exc:
        raise MetricsInputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") \
            from None
    except csv.Error as exc:
        raise MetricsInputError(f"{path}: not a readable CSV file ({exc})") from None


def _read_evqa_references(path: Path) -> dict[str, EVQAReference]:
    refs: dict[str, EVQAReference] = {}
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("question", "answer", "question_type")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise MetricsInputError(f"{path}: missing column(s) {', '.join(missing)} in the "
                                    f"header (found: {', '.join(reader.fieldnames or [])})")
        for row_index, row in enumerate(reader):
            where = f"{path}:{reader.line_num} (row {row_index})"
            if None in row or any(row[c] is None for c in ("question", "answer",
                                                            "question_type")):
                raise MetricsInputError(f"{where}: the row does not have as many fields as "
                                        "the header")
            qtype = row["question_type"]
            if qtype not in QUESTION_TYPES:
                raise MetricsInputError(f"{where}: unknown question_type {qtype!r}; expected "
                                        f"one of {', '.join(QUESTION_TYPES)}")
            refs[str(row_index)] = EVQAReference(str(row_index), row["question"],
                                                 row["answer"].split("|"), qtype)
    return refs


# --------------------------------------------------------------------------- scoring

class EquivalenceScorer(Protocol):
    """What score_evqa needs from BEM (see bem.BEMScorer)."""

    model_id: str

    def probabilities(self, examples: Sequence[tuple[str, str, str]]) -> list[float]:
        """P(equivalent) for (question, reference, candidate) triples."""


@dataclass
class EVQADetail:
    data_id: str
    correct: int
    type: str
    prediction: str
    normalized_prediction: Any       # string, or the list of items for multi_answer
    normalized_references: list[Any]  # one per '|' alternative (lists of items for multi_answer)
    em: int
    bem_probabilities: list[float | None] | None = None  # per alternative, when BEM was asked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EVQAAccuracy:
    accuracy: float   # percent, full precision
    count: int
    correct: float

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "count": self.count}


@dataclass
class EVQAResult:
    single_hop: EVQAAccuracy     # question_type != 2_hop
    all: EVQAAccuracy
    per_type: dict[str, EVQAAccuracy]
    method: str                  # "EM" or "EM+BEM (<model id>)"
    coverage: Coverage
    details: list[EVQADetail] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"single_hop": self.single_hop.to_dict(), "all": self.all.to_dict(),
                "per_type": {k: v.to_dict() for k, v in self.per_type.items()},
                "method": self.method, "coverage": self.coverage.to_dict()}


def _alternative_em(ref: EVQAReference, answer: str, norm_pred: Any) -> tuple[bool, Any]:
    """EM against one '|' alternative, with the official errors for empty references."""
    if not answer:
        raise ValueError("a reference answer is empty")
    if ref.question_type == "multi_answer":
        items = _reference_items(answer)
        return _items_match(items, norm_pred), items
    norm_ref = preprocess_answer(answer)
    if not norm_ref:
        raise ValueError(f"reference answer {answer!r} is empty after preprocessing")
    return norm_ref == norm_pred, norm_ref


def _accuracy(scores: Sequence[float]) -> EVQAAccuracy:
    total = float(sum(scores))
    return EVQAAccuracy(percent(total, len(scores)), len(scores), total)


def score_evqa(predictions: Iterable[Prediction | Mapping[str, Any]],
               references: Mapping[str, EVQAReference], bem: EquivalenceScorer | None = None,
               allow_missing: bool = False) -> EVQAResult:
    """Score every prediction (file order; unknown ids skipped, duplicates scored each time, as
    for InfoSeek). Without ``bem`` this is the EM part of the official score; with it, an
    alternative that fails EM counts when BEM's P(equivalent) >= 0.5."""
    preds = normalize_prediction_records(predictions)
    ref_ids = list(references)
    coverage = build_coverage(preds, ref_ids, {r: references[r].question_type for r in ref_ids},
                              QUESTION_TYPES)
    check_coverage(coverage, allow_missing, "E-VQA")

    details: list[EVQADetail] = []
    pending: list[tuple[int, int, tuple[str, str, str]]] = []  # (detail, alternative, input)
    for p in preds:
        ref = references.get(p.data_id)
        if ref is None:
            continue
        if ref.question_type not in QUESTION_TYPES:
            raise ValueError(f"E-VQA data_id {p.data_id!r}: unknown question_type "
                             f"{ref.question_type!r}; expected one of {', '.join(QUESTION_TYPES)}")
        if not ref.answers:
            raise ValueError(f"E-VQA data_id {p.data_id!r}: the reference list is empty")
        multi = ref.question_type == "multi_answer"
        norm_pred = _candidate_items(p.prediction) if multi else preprocess_answer(p.prediction)
        try:
            results = [_alternative_em(ref, a, norm_pred) for a in ref.answers]
        except ValueError as exc:
            raise ValueError(f"E-VQA data_id {p.data_id!r} (CSV row {p.data_id}): {exc}") \
                from None
        em = any(ok for ok, _ in results)
        detail = EVQADetail(p.data_id, int(em), ref.question_type, p.prediction, norm_pred,
                            [n for _, n in results], int(em))
        if bem is not None:
            detail.bem_probabilities = [None] * len(ref.answers)
            if not em:  # an EM hit scores 1 whatever BEM says, so BEM runs only on misses
                for j, answer in enumerate(ref.answers):
                    reference = answer.replace("&&", ",") if multi else answer
                    pending.append((len(details), j, (ref.question, reference, p.prediction)))
        details.append(detail)

    if bem is not None and pending:
        unique = list(dict.fromkeys(item for _, _, item in pending))  # same input, same answer
        found = dict(zip(unique, bem.probabilities(unique), strict=True))
        logger.info("BEM scored %d distinct (question, reference, candidate) triples", len(unique))
        for i, j, item in pending:
            prob = found[item]
            details[i].bem_probabilities[j] = prob  # type: ignore[index]
            if prob >= 0.5:
                details[i].correct = 1

    scores = [float(d.correct) for d in details]
    per_type = {t: _accuracy([float(d.correct) for d in details if d.type == t])
                for t in QUESTION_TYPES}
    return EVQAResult(
        single_hop=_accuracy([float(d.correct) for d in details if d.type != "2_hop"]),
        all=_accuracy(scores), per_type=per_type,
        method="EM" if bem is None else f"EM+BEM ({bem.model_id})",
        coverage=coverage, details=details)

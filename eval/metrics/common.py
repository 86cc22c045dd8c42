"""What every scorer shares: reading prediction files with file:line errors, and the coverage
report that the official scorers lack (they silently skip missing and unknown ids)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# retriever.fileio and rag_vqa.kb.records are imported where they are used: importing their
# packages loads torch, and ``import eval.metrics`` must stay free of model libraries

__all__ = [
    "MAX_LISTED_IDS", "MetricsInputError", "MissingPredictionsError", "Prediction", "Coverage",
    "read_jsonl", "coerce_id", "load_predictions", "normalize_prediction_records",
    "build_coverage", "check_coverage", "percent",
]

logger = logging.getLogger(__name__)

MAX_LISTED_IDS = 20  # ids listed in coverage reports and error messages; counts are always full


class MetricsInputError(ValueError):
    """A malformed predictions or reference file (the message names the file and line)."""


class MissingPredictionsError(ValueError):
    """Some reference questions have no prediction; scoring them would silently change the
    denominator, so it is refused unless partial scoring is asked for explicitly."""


@dataclass(frozen=True)
class Prediction:
    data_id: str
    prediction: str


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; anything but a JSON object (and
    what the careful reader of retriever.fileio refuses: deep nesting, invalid UTF-8, lone
    surrogates) is an error naming the file, line and field. A byte-order mark is accepted."""
    from retriever.fileio import JSONRecordError, check_json_value, read_jsonl_records, require_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        require_file(path)
    except ValueError as exc:
        raise MetricsInputError(str(exc)) from None
    for lineno, obj, error in read_jsonl_records(path):
        try:
            if error is not None:
                raise error
            check_json_value(obj)
        except JSONRecordError as exc:
            invalid = exc.reason.startswith("invalid JSON: ")
            raise MetricsInputError(f"{path}:{lineno}: not valid JSON ({exc.reason[14:]})"
                                    if invalid else f"{path}:{lineno}: {exc}") from None
        if not isinstance(obj, dict):
            raise MetricsInputError(f"{path}:{lineno}: expected a JSON object, got "
                                    f"{type(obj).__name__}")
        yield lineno, obj


def coerce_id(value: Any, where: str) -> str:
    """Ids are compared as strings; integers are accepted (E-VQA row numbers). Ids follow the
    project's one rule (not blank, not too long, no control character)."""
    from rag_vqa.kb.records import id_problem

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MetricsInputError(f"{where}: 'data_id' must be a string or an integer, got "
                                f"{type(value).__name__}")
    problem = id_problem(value)
    if problem:
        raise MetricsInputError(f"{where}: 'data_id': {problem}")
    return str(value)


def _prediction(obj: Mapping[str, Any], where: str) -> Prediction:
    for key in ("data_id", "prediction"):
        if key not in obj:
            raise MetricsInputError(f"{where}: missing required field {key!r}")
    if not isinstance(obj["prediction"], str):
        raise MetricsInputError(f"{where}: 'prediction' must be a string, got "
                                f"{type(obj['prediction']).__name__}")
    return Prediction(coerce_id(obj["data_id"], where), obj["prediction"])


def load_predictions(path: str | Path) -> list[Prediction]:
    """JSONL with ``data_id`` and ``prediction`` per line (extra fields ignored), file order."""
    return [_prediction(obj, f"{path}:{lineno}") for lineno, obj in read_jsonl(path)]


def normalize_prediction_records(records: Iterable[Prediction | Mapping[str, Any]]
                                 ) -> list[Prediction]:
    """Accept Prediction objects or {"data_id", "prediction"} dicts, keeping order."""
    out = []
    for i, rec in enumerate(records):
        out.append(rec if isinstance(rec, Prediction) else _prediction(rec, f"prediction #{i}"))
    return out


@dataclass
class Coverage:
    """How the predictions line up with the references. ``missing_by_split`` groups the
    missing questions by InfoSeek split (E-VQA: by question type)."""

    references: int
    predictions: int
    scored: int
    missing: int
    missing_by_split: dict[str, int] = field(default_factory=dict)
    missing_ids: list[str] = field(default_factory=list)
    num_duplicate_ids: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    num_unknown_ids: int = 0
    unknown_ids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_coverage(predictions: Sequence[Prediction], reference_ids: Sequence[str],
                   group_of: Mapping[str, str], groups: Sequence[str]) -> Coverage:
    """Coverage of ``predictions`` over ``reference_ids``; ``group_of`` maps an id to its split
    (or question type) so that missing questions can be counted per group."""
    known = set(reference_ids)
    counts = Counter(p.data_id for p in predictions)
    predicted = set(counts)
    missing = [rid for rid in reference_ids if rid not in predicted]
    by_group = {g: 0 for g in groups}
    for rid in missing:
        by_group[group_of[rid]] = by_group.get(group_of[rid], 0) + 1
    duplicates = [pid for pid, n in counts.items() if n > 1 and pid in known]
    unknown = [pid for pid in counts if pid not in known]
    scored = sum(n for pid, n in counts.items() if pid in known)
    return Coverage(
        references=len(known), predictions=len(predictions), scored=scored,
        missing=len(missing), missing_by_split=by_group, missing_ids=missing[:MAX_LISTED_IDS],
        num_duplicate_ids=len(duplicates), duplicate_ids=duplicates[:MAX_LISTED_IDS],
        num_unknown_ids=len(unknown), unknown_ids=unknown[:MAX_LISTED_IDS])


def check_coverage(coverage: Coverage, allow_missing: bool, what: str) -> None:
    """Raise MissingPredictionsError (unless allowed) and log duplicates / unknown ids."""
    if coverage.num_duplicate_ids:
        logger.warning("%s: %d data_id(s) predicted more than once (each copy is scored, as the "
                       "official scorer does), e.g. %s", what, coverage.num_duplicate_ids,
                       ", ".join(coverage.duplicate_ids[:5]))
    if coverage.num_unknown_ids:
        logger.warning("%s: %d predicted data_id(s) are not in the references and are ignored, "
                       "e.g. %s", what, coverage.num_unknown_ids,
                       ", ".join(coverage.unknown_ids[:5]))
    if not coverage.missing:
        return
    split = ", ".join(f"{k}: {v}" for k, v in coverage.missing_by_split.items() if v)
    message = (f"{what}: {coverage.missing} of {coverage.references} reference questions have no "
               f"prediction ({split}); e.g. {', '.join(coverage.missing_ids[:5])}")
    if not allow_missing:
        raise MissingPredictionsError(
            message + ". The official scorer would silently score only the predicted ones; "
                      "pass allow_missing=True (--allow-missing) to do that knowingly.")
    logger.warning("%s; scoring the predicted questions only (allow_missing)", message)


def percent(correct: float, count: int) -> float:
    """(correct / count) * 100 in that order, as the official InfoSeek scorer computes it (the
    order matters for the last bit); 0 when there is nothing to count."""
    return (correct / count) * 100 if count else 0.0

"""Fitting the confidence calibration on a labelled run (``rag-vqa eval calibrate RUN``) and the
selective-answering view of a run: its risk-coverage curve, table and plot.

A question counts when it was answered and scored (``correct`` is true or false in the run's
questions.jsonl); failed, unscored and abstained questions are left out (an abstention hides
the answer the model would have given: calibrate on a run without ``--abstain-below``). The
features come from the final ranking (``reranked`` when the run reranked, else ``retrieved``);
see rag_vqa.confidence for what they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_vqa.confidence import Calibration, confidence, confidence_features, fit_calibration
from retriever.errors import UserInputError

from .selective import plot_risk_coverage, risk_coverage, selective_summary

__all__ = ["DEFAULT_NAME", "calibrate_run", "labelled_rows", "run_selective"]

logger = logging.getLogger(__name__)

DEFAULT_NAME = "calibration.json"


def _ranking(row: dict[str, Any]) -> list[dict[str, Any]]:
    return row.get("reranked") or row.get("retrieved") or []


def _counted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("status") == "ok" and not row.get("abstained")
            and isinstance(row.get("correct"), bool)]


def labelled_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, float]], list[bool]]:
    """(features, correct) of the questions that count (see the module docstring)."""
    kept = _counted(rows)
    return [confidence_features(_ranking(row)) for row in kept], [row["correct"] for row in kept]


def calibrate_run(run_dir: str | Path, features: Sequence[str] = ("margin",),
                  out: str | Path | None = None) -> tuple[Calibration, Path]:
    """Fit on the run, write the calibration (default RUN/calibration.json) and return both."""
    from .compare import load_run

    run = load_run(run_dir)
    rows, correct = labelled_rows(list(run.rows.values()))
    if not rows:
        raise UserInputError(f"{run_dir} has no scored answers to calibrate on (a retrieval-only "
                             "run, or nothing done yet?)")
    calibration = fit_calibration(rows, correct, features)
    calibration.fitted_on = str(Path(run_dir).resolve())
    path = Path(out) if out else Path(run_dir) / DEFAULT_NAME
    calibration.save(path)
    logger.info("calibration over %s fitted on %d answers: %s", list(features), len(rows), path)
    return calibration, path


def run_selective(rows: Sequence[dict[str, Any]], calibration: Calibration | None = None,
                  plot: Path | None = None) -> dict[str, Any] | None:
    """The risk-coverage summary of a run's rows (None without scored answers), plotted to
    ``plot`` when given. Without ``calibration``, the confidence each answer recorded (the
    pipeline's, calibrated if it was configured so) where there is one."""
    kept = _counted(rows)
    if not kept:
        return None
    correct = [row["correct"] for row in kept]
    confidences = [row["confidence"] if calibration is None and
                   isinstance(row.get("confidence"), (int, float)) else
                   confidence(confidence_features(_ranking(row)), calibration) for row in kept]
    summary = selective_summary(confidences, correct)
    summary["calibrated"] = calibration is not None
    if plot is not None:
        plot_risk_coverage([("calibrated" if calibration else "confidence",
                             risk_coverage(confidences, correct))], plot)
        summary["plot"] = plot.name
    return summary

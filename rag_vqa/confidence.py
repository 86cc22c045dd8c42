"""How sure the pipeline is that its evidence holds the answer, and a calibration that turns
that into a probability of being right.

Features of one ranked list (``confidence_features``):

- ``margin``: first-stage score of rank 1 minus that of rank 2 (ReT MaxSim; a clear winner
  is a sign the right entity was found); 0 with fewer than two candidates;
- ``top_score``: the first-stage score of rank 1;
- ``rerank_probability``: the last reranker's P(relevant) for the passage it put first, when a
  stage gives one (yes-probability of an mllm / causal-lm critic, sigmoid of a cross-encoder);
- ``rerank_margin``: the last reranker's score of rank 1 minus that of rank 2.

``confidence``: with a :class:`Calibration` (fitted on a labelled eval run by
``rag-vqa eval calibrate``), ``sigmoid(bias + sum(weight * feature))`` over its features, i.e.
Platt scaling, an estimate of P(the answer is right). Without one: the reranker's probability
when there is one, else ``sigmoid(margin)`` - monotone in the evidence, so it orders answers
correctly for a risk-coverage curve, but only a calibrated value makes a threshold such as
``--abstain-below 0.5`` mean "less than an even chance".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import UserInputError

__all__ = [
    "FEATURES",
    "Calibration",
    "confidence",
    "confidence_features",
    "fit_calibration",
    "threshold_for",
]

FEATURES = ("margin", "top_score", "rerank_probability", "rerank_margin")
FORMAT = "rag-vqa-calibration/1"


def _value(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def confidence_features(ranked: Sequence[Any]) -> dict[str, float]:
    """Features of a ranked list, best first. Items are Evidence, Reranked or dicts: the
    first-stage score is ``first_stage_score`` when present, else ``score``; the reranker's
    ``probability`` (``rerank_probability`` on Evidence) and ``score`` count when ``stages``
    or ``first_stage_score`` say a reranker ran. After reranking, the margin is over the
    first-stage scores of the list given (the shown evidence)."""
    if not ranked:
        return {"margin": 0.0, "top_score": 0.0}

    def first(item: Any) -> float:
        value = _value(item, "first_stage_score")
        return float(value if value is not None else _value(item, "score") or 0.0)

    by_first = sorted((first(i) for i in ranked), reverse=True)
    out = {"margin": by_first[0] - by_first[1] if len(by_first) > 1 else 0.0,
           "top_score": by_first[0]}
    top = ranked[0]
    if _value(top, "stages") or _value(top, "first_stage_score") is not None:
        probability = _value(top, "probability")
        if probability is None:   # pipeline Evidence
            probability = _value(top, "rerank_probability")
        if probability is not None:
            out["rerank_probability"] = float(probability)
        scores = [float(_value(i, "score")) for i in ranked[:2]]
        out["rerank_margin"] = scores[0] - scores[1] if len(scores) > 1 else 0.0
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass
class Calibration:
    """Platt scaling over named features: P(right) = sigmoid(bias + weights . features)."""

    features: list[str]
    weights: list[float]
    bias: float
    fitted_on: str | None = None          # the run it was fitted on
    examples: int = 0
    accuracy: float | None = None         # the run's accuracy (the base rate)
    format: str = field(default=FORMAT)

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features or len(self.weights) != len(self.features):
            raise UserInputError(f"a calibration needs one weight per feature from {FEATURES}, got "
                                 f"features {self.features} and weights {self.weights}")

    def __call__(self, features: Mapping[str, float]) -> float:
        missing = [f for f in self.features if f not in features]
        if missing:
            raise UserInputError(f"the calibration uses {missing}, which this answer lacks "
                                 "(was it fitted on a run with a reranker?)")
        return _sigmoid(self.bias + sum(w * float(features[f])
                                        for w, f in zip(self.weights, self.features)))

    def save(self, path: str | os.PathLike) -> Path:
        from retriever.fileio import atomic_write_json

        return atomic_write_json(Path(path), asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UserInputError(f"calibration file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise UserInputError(f"calibration file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserInputError(f"{path} is not a rag-vqa calibration file (format {FORMAT})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise UserInputError(f"calibration file {path}: {exc}") from exc


def confidence(features: Mapping[str, float], calibration: Calibration | None = None) -> float:
    """See the module docstring."""
    if calibration is not None:
        return calibration(features)
    if "rerank_probability" in features:
        return float(features["rerank_probability"])
    return _sigmoid(float(features.get("margin", 0.0)))


def fit_calibration(rows: Sequence[Mapping[str, float]], correct: Sequence[bool],
                    features: Sequence[str] = ("margin",), l2: float = 1e-4,
                    iterations: int = 100) -> Calibration:
    """Logistic regression of ``correct`` on the features (Newton's method; a small L2 penalty
    keeps it finite when the run is perfectly separable). Features are standardised while
    fitting and the weights mapped back, so the file holds weights on the raw features."""
    features = list(features)
    if len(rows) != len(correct):
        raise UserInputError(f"{len(rows)} feature rows but {len(correct)} labels")
    if len(rows) < 2 or len(set(bool(c) for c in correct)) < 2:
        raise UserInputError("calibration needs at least one right and one wrong answer")
    missing = sorted({f for row in rows for f in features if f not in row})
    if missing:
        raise UserInputError(f"feature(s) {missing} missing from some answers; choose from "
                             f"{sorted(set().union(*rows))}")
    x = np.array([[float(row[f]) for f in features] for row in rows], dtype=np.float64)
    y = np.array([1.0 if c else 0.0 for c in correct])
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2 * len(x)] * len(features))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    weights = w[1:] / scale
    bias = float(w[0] - np.sum(weights * mean))
    return Calibration(features, [float(v) for v in weights], bias, examples=len(rows),
                       accuracy=float(y.mean()))


def threshold_for(calibration: Calibration, probability: float = 0.5) -> float:
    """The value of a one-feature calibration's feature at which P(right) = ``probability``."""
    if len(calibration.features) != 1 or calibration.weights[0] == 0:
        raise ValueError("threshold_for needs a one-feature calibration with a non-zero weight")
    logit = math.log(probability / (1 - probability))
    return (logit - calibration.bias) / calibration.weights[0]

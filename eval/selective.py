"""Selective answering: how accurate the pipeline is on the questions it is most confident
about. Answers are sorted by confidence, best first; at coverage c (the fraction answered) the
selective accuracy is the accuracy over the answered ones and the risk is one minus it.

Equal confidences are answered or withheld together, so the curve has one point per distinct
confidence value (a threshold can not split a tie). ``aurc`` is the area under the risk-coverage
curve (lower is better), the mean of the risk at each point weighted by the coverage it adds.
Values are fractions here; reports show percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "RiskCoveragePoint",
    "aurc",
    "coverage_table",
    "plot_risk_coverage",
    "risk_coverage",
    "selective_summary",
]

COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class RiskCoveragePoint:
    threshold: float       # answer when confidence >= threshold
    answered: int
    coverage: float        # answered / all
    accuracy: float        # right / answered (selective accuracy)

    @property
    def risk(self) -> float:
        return 1.0 - self.accuracy


def _checked(confidences: Sequence[float], correct: Sequence[bool]) -> None:
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} verdicts")
    bad = [c for c in confidences if not isinstance(c, (int, float)) or math.isnan(c)]
    if bad:
        raise ValueError(f"confidences must be numbers, got {bad[:3]}")


def risk_coverage(confidences: Sequence[float], correct: Sequence[bool]
                  ) -> list[RiskCoveragePoint]:
    """The curve, from the most confident group to everything answered."""
    _checked(confidences, correct)
    n = len(confidences)
    order = sorted(range(n), key=lambda i: -confidences[i])
    points, right, i = [], 0, 0
    while i < n:
        j, level = i, confidences[order[i]]
        while j < n and confidences[order[j]] == level:
            right += bool(correct[order[j]])
            j += 1
        points.append(RiskCoveragePoint(float(level), j, j / n, right / j))
        i = j
    return points


def coverage_table(points: Sequence[RiskCoveragePoint], coverages: Sequence[float] = COVERAGES
                   ) -> list[dict[str, float]]:
    """For each target coverage, the first point reaching it (what a threshold achieves
    there): its threshold, actual coverage, selective accuracy and risk."""
    rows = []
    for target in coverages:
        point = next((p for p in points if p.coverage >= target - 1e-12), None)
        if point is not None:
            rows.append({"target_coverage": target, **asdict(point), "risk": point.risk})
    return rows


def aurc(points: Sequence[RiskCoveragePoint]) -> float:
    """Area under the risk-coverage curve (step-wise, see the module docstring)."""
    area, previous = 0.0, 0.0
    for p in points:
        area += (p.coverage - previous) * p.risk
        previous = p.coverage
    return area


def selective_summary(confidences: Sequence[float], correct: Sequence[bool]) -> dict:
    """What the report holds: the table, the area, and the accuracy with everything answered."""
    points = risk_coverage(confidences, correct)
    return {"questions": len(confidences), "aurc": aurc(points) if points else None,
            "accuracy": points[-1].accuracy if points else None,
            "table": coverage_table(points),
            "curve": [{**asdict(p), "risk": p.risk} for p in points]}


def plot_risk_coverage(curves: Sequence[tuple[str, Sequence[RiskCoveragePoint]]],
                       path: Path, title: str = "Risk-coverage") -> Path:
    """Selective accuracy (percent) against coverage, one line per labelled curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for label, points in curves:
        xs = [0.0] + [100 * p.coverage for p in points]
        ys = [100 * points[0].accuracy if points else 0.0] + [100 * p.accuracy for p in points]
        ax.step(xs, ys, where="post", label=label)
    ax.set_xlabel("Coverage (% of questions answered)")
    ax.set_ylabel("Selective accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if curves:
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

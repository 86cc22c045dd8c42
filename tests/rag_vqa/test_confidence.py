"""Confidence features and Platt calibration: a known threshold is recovered from a synthetic
run whose right answers follow a logistic curve around it."""

import math
import random

import numpy as np
import pytest

from rag_vqa.confidence import (
    Calibration,
    confidence,
    confidence_features,
    fit_calibration,
    threshold_for,
)
from retriever.rerank import Candidate, Reranked, StageScore


def synthetic_run(threshold, slope, n=4000, seed=0):
    rng = random.Random(seed)
    rows, correct = [], []
    for _ in range(n):
        margin = rng.uniform(threshold - 3, threshold + 3)
        p = 1 / (1 + math.exp(-slope * (margin - threshold)))
        rows.append({"margin": margin})
        correct.append(rng.random() < p)
    return rows, correct


@pytest.mark.parametrize("threshold, slope", [(1.5, 2.0), (-0.7, 4.0)])
def test_calibration_recovers_the_threshold_and_slope(threshold, slope):
    rows, correct = synthetic_run(threshold, slope)
    fit = fit_calibration(rows, correct)
    assert threshold_for(fit) == pytest.approx(threshold, abs=0.1)
    assert fit.weights[0] == pytest.approx(slope, rel=0.15)
    assert fit(dict(margin=threshold)) == pytest.approx(0.5, abs=0.03)


def test_fit_matches_the_logistic_likelihood_optimum():
    rows, correct = synthetic_run(0.3, 1.0, n=500, seed=3)
    fit = fit_calibration(rows, correct, l2=0.0)
    x = np.array([r["margin"] for r in rows])
    y = np.array(correct, dtype=float)

    def nll(a, b):
        p = 1 / (1 + np.exp(-(a * x + b)))
        return -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))

    best = nll(fit.weights[0], fit.bias)
    for da, db in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert nll(fit.weights[0] + da, fit.bias + db) > best


def test_separable_run_stays_finite_and_orders_right():
    rows = [{"margin": m} for m in (0.1, 0.2, 0.3, 0.7, 0.8, 0.9)]
    fit = fit_calibration(rows, [False, False, False, True, True, True])
    assert all(math.isfinite(v) for v in fit.weights + [fit.bias])
    assert fit({"margin": 0.9}) > 0.5 > fit({"margin": 0.1})


def test_save_load_and_bad_files(tmp_path):
    fit = fit_calibration(*synthetic_run(0.0, 1.0, n=200))
    fit.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == fit
    (tmp_path / "bad.json").write_text('{"features": ["margin"]}')
    with pytest.raises(ValueError, match="not a rag-vqa calibration"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        Calibration.load(tmp_path / "none.json")
    with pytest.raises(ValueError, match="one right and one wrong"):
        fit_calibration([{"margin": 1.0}] * 3, [True] * 3)
    with pytest.raises(ValueError, match="rerank_probability"):
        fit_calibration([{"margin": 1.0}, {"margin": 0.0}], [True, False],
                        features=["rerank_probability"])
    with pytest.raises(ValueError, match="lacks"):
        Calibration(["rerank_probability"], [1.0], 0.0)({"margin": 1.0})


def test_features_of_first_stage_and_reranked_lists():
    evidence = [{"passage_id": "a", "score": 3.0}, {"passage_id": "b", "score": 2.5},
                {"passage_id": "c", "score": 1.0}]
    assert confidence_features(evidence) == {"margin": 0.5, "top_score": 3.0}
    assert confidence(confidence_features(evidence)) == pytest.approx(1 / (1 + math.exp(-0.5)))
    # the reranker moved b first: margins of the first stage still use its scores
    ranked = [Reranked(Candidate("b", "", 2.5, 2), (StageScore("x", 1.2, 1, 0.8),)),
              Reranked(Candidate("a", "", 3.0, 1), (StageScore("x", -0.3, 2, 0.4),))]
    features = confidence_features(ranked)
    assert features == pytest.approx({"margin": 0.5, "top_score": 3.0,
                                      "rerank_probability": 0.8, "rerank_margin": 1.5})
    assert confidence(features) == 0.8
    assert confidence_features([]) == {"margin": 0.0, "top_score": 0.0}

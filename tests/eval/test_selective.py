"""Risk-coverage against a reference computed here by brute force (every threshold)."""

import random

import pytest

from eval.selective import (
    aurc,
    coverage_table,
    plot_risk_coverage,
    risk_coverage,
    selective_summary,
)


def reference(confidences, correct):
    """For every distinct confidence t: answer the questions with confidence >= t."""
    out = []
    for t in sorted(set(confidences), reverse=True):
        answered = [ok for c, ok in zip(confidences, correct) if c >= t]
        out.append((t, len(answered), len(answered) / len(confidences),
                    sum(answered) / len(answered)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_matches_brute_force(seed):
    rng = random.Random(seed)
    # rounded confidences make ties; right answers more likely at high confidence
    confidences = [round(rng.random(), 1) for _ in range(200)]
    correct = [rng.random() < 0.2 + 0.7 * c for c in confidences]
    points = risk_coverage(confidences, correct)
    ref = reference(confidences, correct)
    assert [(p.threshold, p.answered, p.coverage) for p in points] == \
        [(t, n, cov) for t, n, cov, _ in ref]
    for p, (_, _, _, acc) in zip(points, ref):
        assert p.accuracy == pytest.approx(acc) and p.risk == pytest.approx(1 - acc)
    area = sum((ref[i][2] - (ref[i - 1][2] if i else 0)) * (1 - ref[i][3])
               for i in range(len(ref)))
    assert aurc(points) == pytest.approx(area)
    assert points[-1].coverage == 1.0
    assert points[-1].accuracy == pytest.approx(sum(correct) / len(correct))


def test_confidence_that_orders_well_has_lower_risk_than_reversed():
    confidences = [i / 100 for i in range(100)]
    correct = [i >= 50 for i in range(100)]
    good = risk_coverage(confidences, correct)
    bad = risk_coverage([-c for c in confidences], correct)
    assert aurc(good) < aurc(bad)
    table = {round(r["target_coverage"], 1): r for r in coverage_table(good)}
    assert table[0.5]["accuracy"] == 1.0 and table[0.5]["threshold"] == 0.5
    assert table[1.0]["accuracy"] == 0.5


def test_summary_plot_and_bad_input(tmp_path):
    summary = selective_summary([0.9, 0.1, 0.5], [True, False, True])
    assert summary["accuracy"] == pytest.approx(2 / 3) and summary["questions"] == 3
    assert [p["answered"] for p in summary["curve"]] == [1, 2, 3]
    path = plot_risk_coverage([("run", risk_coverage([0.9, 0.1, 0.5], [True, False, True]))],
                              tmp_path / "rc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 confidences but 1"):
        risk_coverage([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="numbers"):
        risk_coverage([float("nan")], [True])
    assert risk_coverage([], []) == []

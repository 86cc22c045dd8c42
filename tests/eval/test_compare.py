"""`eval compare`: paired statistics checked against direct computations, and two real runs
compared through the command line."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from eval.compare import CompareError, RunData, compare_runs, mcnemar_p, paired_bootstrap
from eval.report import write_report
from eval.runner import RunSpec, run_eval
from rag_vqa.samples import SAMPLE_KB
from tests.eval.test_eval_cli import in_process
from tests.eval.test_rankings import _foreign


@pytest.mark.parametrize("gained,lost", [(0, 0), (10, 0), (3, 7), (12, 13), (40, 25)])
def test_mcnemar_is_the_exact_binomial_test(gained, lost):
    n = gained + lost
    expected = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in
                                                   range(min(gained, lost) + 1)) / 2 ** n)
    assert mcnemar_p(gained, lost) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_matches_resampling_questions():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, 300)
    b = np.where(rng.random(300) < 0.3, 1 - a, a)
    fast = paired_bootstrap(a, b, samples=20_000, seed=1)
    picks = np.random.default_rng(2).integers(0, 300, size=(20_000, 300))
    naive = 100 * (b[picks] - a[picks]).mean(axis=1)
    assert fast == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])), abs=0.6)
    assert paired_bootstrap(a, b, 2000, seed=3) == paired_bootstrap(a, b, 2000, seed=3)
    low, high = fast
    assert low < 100 * (b.mean() - a.mean()) < high


def _rows(outcomes, ranks):
    return {f"q{i}": {"data_id": f"q{i}", "question": f"question {i}", "correct": c,
                      "split": "seen" if i % 2 else "unseen", "type": "String",
                      "ranks": {"recall": r}, "prediction": f"p{c}"}
            for i, (c, r) in enumerate(zip(outcomes, ranks))}


def _run(label, outcomes, ranks):
    return RunData(label, f"/runs/{label}", {"retrieval": {"ks": [1, 5, 10]}},
                   _rows(outcomes, ranks))


def test_compare_runs_against_direct_counts():
    a_ok = [1, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    b_ok = [1, 1, 1, 0, 1, 1, 0, 1, 1, 1]
    a_rank = [1, None, 3, 7, 1, 2, None, 12, 1, 5]
    b_rank = [1, 1, 1, 1, 2, None, None, 4, 1, 1]
    a, b = _run("a", a_ok, a_rank), _run("b", b_ok, b_rank)
    result = compare_runs([a, b], samples=2000, seed=0, flips=3)
    acc = result["overall"]["accuracy"]
    assert acc["values"] == {"a": 50.0, "b": 80.0} and acc["count"] == 10
    delta = acc["deltas"]["b"]
    assert (delta["gained"], delta["lost"], delta["delta"]) == (4, 1, pytest.approx(30.0))
    assert delta["p_mcnemar"] == pytest.approx(mcnemar_p(4, 1))
    assert delta["ci95"] == list(paired_bootstrap(a_ok, b_ok, 2000, 0))
    for k in (1, 5, 10):
        entry = result["overall"][f"R@{k}"]
        assert entry["values"]["a"] == 100 * sum(r is not None and r <= k for r in a_rank) / 10
        assert entry["values"]["b"] == 100 * sum(r is not None and r <= k for r in b_rank) / 10
    seen = result["per_split"]["seen"]["accuracy"]
    assert seen["count"] == 5 and seen["values"]["a"] == 100 * sum(a_ok[1::2]) / 5
    flips = result["flipped"]["b"]
    assert (flips["gained_count"], flips["lost_count"]) == (4, 1)
    assert [f["data_id"] for f in flips["gained"]] == ["q1", "q2", "q5"]   # first 3 of 4
    assert flips["lost"][0]["data_id"] == "q3"
    assert flips["lost"][0]["predictions"] == {"a": "p1", "b": "p0"}


def test_compare_refuses_what_cannot_be_compared():
    a = _run("a", [1, 0], [1, 2])
    with pytest.raises(CompareError, match="at least two"):
        compare_runs([a])
    with pytest.raises(CompareError, match="share a label"):
        compare_runs([a, _run("a", [0, 0], [1, 1])])
    other = RunData("c", "/c", {}, {"x": {"data_id": "x", "correct": 1}})
    with pytest.raises(CompareError, match="share no question"):
        compare_runs([a, other])


def test_two_runs_through_the_command_line(tmp_path, pipe):
    questions = str(SAMPLE_KB / "questions.jsonl")
    ours, foreign = tmp_path / "ours", tmp_path / "foreign"
    run_eval(RunSpec(dataset="ret-jsonl", questions=questions, images=str(SAMPLE_KB),
                     out=str(ours), retrieval_only=True, k=4), pipe)
    path, _ = _foreign(tmp_path)
    run_eval(RunSpec(dataset="ret-jsonl", questions=questions, images=str(SAMPLE_KB),
                     out=str(foreign), retrieval_only=True, k=4, rankings=str(path)), pipe)
    reports = [write_report(ours), write_report(foreign)]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = in_process(["eval", "compare", str(ours), str(foreign), "--labels",
                           "ours,preflmr", "--json", "--out", str(tmp_path / "cmp"),
                           "--bootstrap", "500"])
    assert code == 0
    result = json.loads(buffer.getvalue())
    assert result["shared_questions"] == 6 and result["baseline"] == "ours"
    for name, report in zip(("ours", "preflmr"), reports):
        for k in (1, 4):
            assert result["overall"][f"R@{k}"]["values"][name] == \
                pytest.approx(report["retrieval"]["recall"][f"@{k}"])
    assert {"compare.json", "compare.md", "compare_recall_at_k.png"} <= \
        set(result["written"])
    assert "McNemar" in (tmp_path / "cmp" / "compare.md").read_text()
    # text output: the same numbers as a table
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert in_process(["eval", "compare", str(ours), str(foreign)]) == 0
    assert "| R@1 | 6 |" in buffer.getvalue()

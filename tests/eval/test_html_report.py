"""report.html (one self-contained page), report.md / report.json agreeing in one convention,
Recall@K only up to the depth retrieved, n/a for empty categories, per-question timings."""

import json
import re

import pytest

from eval.html_report import verdict
from eval.plots import grouped_bars, recall_curves
from eval.report import write_report
from eval.runner import RunSpec, read_predictions, run_eval
from tests.eval.evaldata import infoseek_files


@pytest.fixture(scope="module")
def run(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("html")
    files = infoseek_files(folder)
    (files["images"] / "oven_00001.jpg").unlink()      # one question fails: no image
    spec = RunSpec(dataset="infoseek", questions=str(files["questions"]),
                   images=str(files["images"]), out=str(folder / "run"),
                   qtypes=str(files["qtypes"]), withkb=str(files["withkb"]), batch_size=1)
    run_eval(spec, pipe)
    return folder / "run", write_report(folder / "run")


def test_page_is_self_contained_and_lists_every_question(run):
    out, report = run
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|<link|@import""", page)
    assert page.count("data:image/png;base64,") == len(report["plots"]) >= 2
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    # five question photos and the retrieved passages' flags as thumbnails
    assert page.count('<div class="q"') == 6 and page.count("data:image/jpeg;base64,") > 5
    for row in rows:
        assert row["data_id"] in page
    kinds = [verdict(r, 4) for r in rows]
    assert kinds.count("failed") == 1
    failing = sum(k in ("wrong", "miss", "failed") for k in kinds)
    assert f"failures\n({failing})" in page or f"failures ({failing})" in page
    assert page.count('data-fail="1"') == failing
    assert "function filter(" in page
    for row in rows:  # the retrieved passages, with their ids and scores
        for hit in row["retrieved"]:
            assert f"<code>{hit['passage_id']}</code>" in page


def test_markdown_and_json_agree_in_percent(run):
    out, report = run
    md = (out / "report.md").read_text()
    assert report["units"].startswith("percent")
    retrieval = report["retrieval"]
    assert retrieval["ks"] == [1, 4] and retrieval["depth"] == 4     # k = 4: no @5 ... @100
    assert "@5" not in json.dumps(retrieval["entity_recall"]) and "| @1 | @4 |" in md
    for name in ("pseudo_recall", "entity_recall"):
        line = next(x for x in md.splitlines() if x.startswith(f"| {name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2:] == [f"{retrieval[name][f'@{k}']:.2f}" for k in (1, 4)]
    split = report["qa"]["infoseek"]["unseen_question"]
    assert split["count_time"] == 0 and split["score_time"] is None      # no Time question
    line = next(x for x in md.splitlines() if x.startswith("| unseen_question |"))
    assert "| n/a | n/a |" in line and f"{split['score']:.2f}" in line
    breakdown = report["qa"]["breakdown"]
    assert sum(v["all"]["count"] for v in breakdown.values()) == 6


def test_timings_are_per_question(run):
    out, report = run
    records = [r for r in read_predictions(out / "predictions.jsonl") if r["status"] == "ok"]
    latencies = [r["timings"]["latency"] for r in records]
    assert all(r["timings"]["batch_size"] == 1 for r in records)
    assert len(set(latencies)) == len(records)   # one measurement per question
    stats = report["timings"]["latency"]
    assert stats["count"] == len(records)
    assert min(latencies) <= stats["p50"] <= stats["p95"] <= max(latencies)


def test_plots_draw_na_and_several_runs(tmp_path):
    bars = grouped_bars({"unseen_question": {"all": (40.0, 10), "Time": (None, 0)},
                         "unseen_entity": {"all": (20.0, 5), "Time": (100.0, 1)}},
                        tmp_path / "bars.png", "Accuracy")
    assert bars.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = recall_curves([("a", {"ks": [1, 5], "recall": {"@1": 10.0, "@5": 30.0}}),
                            ("b", {"ks": [1], "recall": {"@1": 12.0}})], tmp_path / "c.png")
    assert curves is not None and curves.stat().st_size > 1000
    assert recall_curves([("a", {})], tmp_path / "none.png") is None


def test_long_runs_list_failures_first(tmp_path, monkeypatch):
    import eval.html_report as page

    monkeypatch.setattr(page, "MAX_QUESTIONS", 4)
    rows = [{"data_id": f"q{i}", "question": f"question {i}", "status": "ok", "answers": ["a"],
             "prediction": "a" if i < 9 else "b", "correct": int(i < 9), "retrieved": []}
            for i in range(12)]
    report = {"run": {"dataset": "ret-jsonl", "k": 5}, "models": {}, "plots": [],
              "coverage": {"done": 12, "selected": 12, "failed": 0}, "summary": {}}
    text = page.write_html(report, rows, None, tmp_path).read_text()
    assert "4 of 12 questions listed" in text and "failures\n(3)" in text
    listed = re.findall(r"<code>(q\d+)</code>", text)
    # failures take up to half the page (q9, q10), the others fill it; file order kept
    assert listed == ["q0", "q1", "q9", "q10"]

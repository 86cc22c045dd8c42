"""Rankings in TREC / ColBERT TSV / JSONL: round trips, foreign files as other tools write them,
clear errors, and `eval run --rankings` scoring and answering from a foreign ranking."""

import contextlib
import io

import pytest

from eval.rankings import (
    RankingsError,
    format_rankings,
    read_rankings,
    run_rankings,
    write_rankings,
)
from eval.report import write_report
from eval.runner import RunSpec, read_predictions, run_eval
from rag_vqa.samples import SAMPLE_KB, sample_passages
from retriever.fileio import read_jsonl_records
from tests.eval.test_eval_cli import in_process

RANKINGS = {"q1": [("japan-0", 3.5), ("japan-1", 2.25), ("china-0", -0.5)],
            "InfoSeek val 7": [("france-1", 1.0)]}


@pytest.mark.parametrize("fmt", ["trec", "tsv", "jsonl"])
def test_round_trip(tmp_path, fmt):
    rankings = {"q1": RANKINGS["q1"], "q2": [("italy-0", 0.125)]}
    path = write_rankings(rankings, tmp_path / f"run.{fmt}", fmt, tag="mine")
    assert read_rankings(path) == rankings
    if fmt == "trec":
        assert path.read_text().splitlines()[0] == "q1 Q0 japan-0 1 3.5 mine"
    if fmt == "tsv":
        assert path.read_text().splitlines()[1] == "q1\tjapan-1\t2\t2.25"


def test_ids_with_spaces_need_jsonl(tmp_path):
    with pytest.raises(ValueError, match="use jsonl"):
        format_rankings(RANKINGS, "trec")
    path = write_rankings(RANKINGS, tmp_path / "r.jsonl", "jsonl")
    assert read_rankings(path) == RANKINGS


def test_foreign_files(tmp_path):
    trec = tmp_path / "pyserini.trec"   # out of rank order, as some tools write them
    trec.write_text("q1 Q0 p9 2 11.0 bm25\nq1 Q0 p3 1 12.5 bm25\n\nq2 Q0 p3 1 4 bm25\n")
    assert read_rankings(trec) == {"q1": [("p3", 12.5), ("p9", 11.0)], "q2": [("p3", 4.0)]}
    colbert = tmp_path / "ranking.tsv"  # ColBERT without scores: scores follow the ranks
    colbert.write_text("7\t100\t1\n7\t42\t2\n")
    assert read_rankings(colbert) == {"7": [("100", -1.0), ("42", -2.0)]}
    preflmr = tmp_path / "preflmr.jsonl"
    preflmr.write_text('{"question_id": "Q1", "ranking": ["WikiWeb_A_0", "WikiWeb_B_3"]}\n'
                       '{"qid": "Q2", "retrieved": [{"passage_id": "x", "score": 0.5}]}\n')
    assert read_rankings(preflmr) == {"Q1": [("WikiWeb_A_0", -1.0), ("WikiWeb_B_3", -2.0)],
                                      "Q2": [("x", 0.5)]}


@pytest.mark.parametrize("text,message", [
    ("q1 Q0 p1 1 2.0 t\nq1 Q0 p1 2 1.0 t\n", r"r\.trec:2: query 'q1' repeats passage 'p1' of "
                                              r"line 1"),
    ("q1 Q0 p1 1 2.0 t\nq1 Q0 p2 1 1.0 t\n", r"repeats rank 1 of line 1"),
    ("q1 p1 1 2.0 t\n", r"r\.trec:1: expected a TREC run line"),
    ("q1\tp1\t0\n", r"rank '0' must be a whole number >= 1"),
    ("q1\tp1\t1\tnan\n", r"score 'nan' is not a finite number"),
    ('{"data_id": "q1"}\n', r"r\.trec:1: needs a query id"),
    ('{"data_id": "q1", "retrieved": []}\n{"data_id": "q1", "retrieved": []}\n',
     r"query 'q1' is listed twice"),
])
def test_bad_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "r.trec"
    path.write_text(text)
    with pytest.raises(RankingsError, match=message):
        read_rankings(path)


def _foreign(tmp_path):
    """A TREC run for the sample questions: every passage, the gold one at rank 2 for the odd
    questions and at rank 1 for the even ones; q6 is left out."""
    ids = [p.passage_id for p in sample_passages()]
    rankings = {}
    for number, row, _ in read_jsonl_records(SAMPLE_KB / "questions.jsonl"):
        if row["data_id"] == "q6":
            continue
        gold = row["passage_id"][0]
        others = [i for i in ids if i != gold][number * 3:number * 3 + 5]
        order = [gold, *others] if number % 2 == 0 else [others[0], gold, *others[1:]]
        rankings[row["data_id"]] = [(pid, 10.0 - r) for r, pid in enumerate(order)]
    return write_rankings(rankings, tmp_path / "foreign.trec", "trec"), rankings


def test_scoring_a_foreign_ranking(tmp_path, pipe):
    path, rankings = _foreign(tmp_path)
    out = tmp_path / "run"
    spec = RunSpec(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                   images=str(SAMPLE_KB), out=str(out), retrieval_only=True,
                   rankings=str(path), k=4)
    summary = run_eval(spec, pipe)
    assert (summary.answered, summary.failed) == (5, 1)
    records = {r["data_id"]: r for r in read_predictions(out / "predictions.jsonl")}
    assert "no ranking for this question" in records["q6"]["error"]
    for qid, ranked in rankings.items():
        assert [h["passage_id"] for h in records[qid]["retrieved"]] == [p for p, _ in ranked[:4]]
    report = write_report(out)
    assert report["models"]["retriever"] == "(imported rankings)"
    gold = {row["data_id"]: set(row["passage_id"])
            for _, row, _ in read_jsonl_records(SAMPLE_KB / "questions.jsonl")}
    for k in (1, 4):  # q6 has no ranking: a miss, out of all six questions
        hits = sum(any(p in gold[q] for p, _ in ranked[:k]) for q, ranked in rankings.items())
        assert report["retrieval"]["recall"][f"@{k}"] == pytest.approx(100 * hits / 6)
    assert report["retrieval"]["ks"] == [1, 4]
    # a rankings file is part of the run's identity: another one is refused
    other = write_rankings({"q1": [("japan-0", 1.0)]}, tmp_path / "other.trec", "trec")
    with pytest.raises(ValueError, match="rankings"):
        run_eval(RunSpec(**{**spec.__dict__, "rankings": str(other)}), pipe)


def test_answering_from_a_foreign_ranking_and_export(tmp_path, pipe):
    path, rankings = _foreign(tmp_path)
    broken = dict(rankings)
    broken["q5"] = [("no-such-passage", 1.0)]
    write_rankings(broken, path, "trec")
    out = tmp_path / "run"
    spec = RunSpec(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                   images=str(SAMPLE_KB), out=str(out), rankings=str(path), k=3, batch_size=3)
    summary = run_eval(spec, pipe)
    assert (summary.answered, summary.failed) == (4, 2)
    records = {r["data_id"]: r for r in read_predictions(out / "predictions.jsonl")}
    assert "no-such-passage" in records["q5"]["error"]
    for qid in ("q1", "q2", "q3", "q4"):
        r = records[qid]
        assert r["status"] == "ok" and r["prompt"] and isinstance(r["prediction"], str)
        assert [h["passage_id"] for h in r["retrieved"]] == [p for p, _ in rankings[qid][:3]]
        assert r["timings"]["latency"] > 0 and r["timings"]["batch_size"] in (1, 2, 3)

    exported = tmp_path / "ours.tsv"
    with contextlib.redirect_stdout(io.StringIO()):
        assert in_process(["eval", "export", str(out), "--format", "tsv", "--out",
                           str(exported)]) == 0
    assert read_rankings(exported) == run_rankings(records.values())
    assert set(read_rankings(exported)) == {"q1", "q2", "q3", "q4"}

"""`eval run` with a reranking stage and abstention (tiny models, sample KB): the records hold
both rankings, the report scores both side by side, counts abstentions apart (scored wrong)
and has the risk-coverage table and plot."""

import pytest

from eval.report import write_report
from eval.runner import RunSpec, read_predictions, run_eval
from rag_vqa import RagVQA
from rag_vqa.config import load_config
from tests.eval.evaldata import infoseek_files


def reranked_pipe(pipe, **answer):
    config = load_config(None, profile="tiny", k=4, index=pipe.config.index.__dict__,
                         generator={"max_new_tokens": 6},
                         reranker={"k_retrieve": 10,
                                   "stages": [{"kind": "article", "aggregate": "sum"}]},
                         answer=answer)
    c = pipe.components
    return RagVQA(config, retriever=c.retriever, generator=c.generator, index=c.index,
                  store=c.store)


def spec_for(files, out):
    return RunSpec(dataset="infoseek", questions=str(files["questions"]),
                   images=str(files["images"]), out=str(out), qtypes=str(files["qtypes"]),
                   withkb=str(files["withkb"]), batch_size=4)


def test_both_stages_side_by_side_and_abstentions(tmp_path, pipe):
    files = infoseek_files(tmp_path)
    run_eval(spec_for(files, tmp_path / "plain"), pipe)
    plain = write_report(tmp_path / "plain")
    run_eval(spec_for(files, tmp_path / "rerank"),
             reranked_pipe(pipe, abstain_below=1.0, abstain_text="I don't know"))
    records = read_predictions(tmp_path / "rerank" / "predictions.jsonl")
    for r in records:
        assert len(r["first_stage"]) == 10 and len(r["retrieved"]) == 4
        assert [c["passage_id"] for c in r["reranked"][:4]] == \
            [h["passage_id"] for h in r["retrieved"]]
        assert r["abstained"] and r["prediction"] == "I don't know"
        assert 0.5 <= r["confidence"] < 1           # sigmoid of a non-negative margin
    report = write_report(tmp_path / "rerank")
    assert report["coverage"]["abstained"] == len(records)
    assert "abstained" not in plain["coverage"]
    # the first stage's top 1 is the plain run's top 1
    first, base = report["retrieval_first_stage"], plain["retrieval"]
    for metric in ("entity_recall", "pseudo_recall"):
        assert first[metric]["@1"] == pytest.approx(base[metric]["@1"])
    assert first["depth"] == 10 and report["retrieval"]["depth"] == 4
    # abstentions are wrong answers to the official scorer
    assert report["qa"]["infoseek"]["final_score"] == 0
    # nothing answered: no risk-coverage table, no plot
    assert "selective" not in report and "selective.png" not in report["plots"]


def test_selective_table_of_a_run_that_answers(tmp_path, pipe):
    files = infoseek_files(tmp_path)
    run_eval(spec_for(files, tmp_path / "run"), reranked_pipe(pipe))
    report = write_report(tmp_path / "run")
    selective = report["selective"]
    assert selective["questions"] == 6 and selective["table"][-1]["coverage"] == 1.0
    assert (tmp_path / "run" / "selective.png").stat().st_size > 0
    text = (tmp_path / "run" / "report.md").read_text()
    assert "## Reranking: first stage against reranked" in text
    assert "| entity_recall | first stage |" in text and "## Selective answering" in text


def test_retrieval_only_runs_record_and_report_both_stages(tmp_path, pipe):
    files = infoseek_files(tmp_path)
    spec = spec_for(files, tmp_path / "staged")
    spec.retrieval_only = True
    run_eval(spec, reranked_pipe(pipe))
    for r in read_predictions(tmp_path / "staged" / "predictions.jsonl"):
        assert len(r["first_stage"]) == 10 and len(r["retrieved"]) == 4
        assert [c["passage_id"] for c in r["reranked"][:4]] == \
            [h["passage_id"] for h in r["retrieved"]]
    report = write_report(tmp_path / "staged")
    first, reranked = report["retrieval_first_stage"], report["retrieval_reranked"]
    assert first["depth"] == 10 and report["retrieval"]["depth"] == 4
    assert reranked["depth"] > 4                 # the whole reranked list, not only its top k
    for metric in ("entity_recall", "pseudo_recall"):  # the top k is the reranked list's top
        assert reranked[metric]["@1"] == pytest.approx(report["retrieval"][metric]["@1"])
    text = (tmp_path / "staged" / "report.md").read_text()
    table = text.split("## Reranking: first stage against reranked")[1].split("##")[0]
    assert "| entity_recall | reranked | " in table and "| @1 | @5 |" in table
    # without a reranker: one stage, recorded once
    spec = spec_for(files, tmp_path / "plain")
    spec.retrieval_only = True
    run_eval(spec, pipe)
    assert all("first_stage" not in r and "reranked" not in r
               for r in read_predictions(tmp_path / "plain" / "predictions.jsonl"))
    plain = write_report(tmp_path / "plain")
    assert plain["retrieval"]["depth"] == 4 and "retrieval_first_stage" not in plain
    assert "Reranking" not in (tmp_path / "plain" / "report.md").read_text()

"""M2KR benchmarks: the query files as published, title-as-article passages, per-benchmark
Recall@K / PR@K / entity recall, and the ReT-README-shaped table across runs."""

import json

import pytest

from eval.datasets import DatasetError, read_questions
from eval.m2kr import BENCHMARKS, benchmark_of, m2kr_table, table_markdown
from eval.report import write_report
from eval.runner import RunSpec, read_predictions, run_eval
from rag_vqa import RagVQA
from rag_vqa.config import load_config
from rag_vqa.indexing import build_index
from rag_vqa.kb import PassageStore, import_kb
from rag_vqa.loading import load_retriever
from rag_vqa.samples import SAMPLE_KB
from tests.eval.m2krdata import (
    INSTRUCTION,
    data_file,
    m2kr_id,
    passages_file,
    sample_queries,
    write_parquet,
)
from tests.eval.test_eval_cli import in_process

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def m2kr(tmp_path_factory):
    """The sample as an M2KR passage corpus (imported with --format m2kr), indexed by the tiny
    retriever, and a pipeline over it."""
    folder = tmp_path_factory.mktemp("m2kr")
    kb, index = folder / "kb", folder / "index"
    import_kb("m2kr", passages_file(folder), kb, progress=False, resume=False)
    loaded = load_retriever("tiny", None, None)
    build_index(kb, loaded, index, method="exact", workers=0, show_progress=False)
    config = load_config(None, profile="tiny", k=5, index={"path": str(index), "kb": str(kb)})
    return {"folder": folder, "kb": kb, "pipe": RagVQA(config, retriever=loaded)}


def test_benchmark_names_from_the_published_file_names():
    assert benchmark_of("M2KR/Infoseek_data/test-00000-of-00001.parquet") == "InfoSeek"
    assert benchmark_of("EVQA_data/valid-00000-of-00002.parquet") == "E-VQA"
    assert benchmark_of("/data/ret/evqa_test_m2kr.jsonl") == "E-VQA"
    assert benchmark_of("okvqa_test.jsonl") == "OKVQA"
    assert benchmark_of("/x/WIT_data/test.parquet") == "WIT"
    assert benchmark_of("/x/mine/custom_set.jsonl") == "custom_set"
    assert (BENCHMARKS["wit"].k, BENCHMARKS["llava"].k, BENCHMARKS["infoseek"].k) == (10, 1, 5)


def test_m2kr_passages_keep_the_title_as_article(m2kr):
    with PassageStore.open(m2kr["kb"]) as store:
        passage = store.get(m2kr_id("france-1"))
    assert passage.title == "France" and passage.article_id == "France"
    assert passage.text.startswith("title: France content: The flag of France")


def test_m2kr_data_shard_read_as_published(tmp_path):
    path = data_file(tmp_path, "Infoseek", [0, 1, 2])
    questions = read_questions("m2kr", path).questions
    rows = sample_queries()
    assert [q.data_id for q in questions] == [f"Infoseek_test_{i:05d}" for i in range(3)]
    for q, row in zip(questions, rows):
        assert (q.question, q.instruction, q.image) == (row["question"], INSTRUCTION,
                                                        row["image_path"])
        assert q.positives == [m2kr_id(p) for p in row["passage_id"]]
        assert q.answers == row["answer"] and q.split == "InfoSeek" and q.error is None


def test_ret_m2kr_jsonl_and_bad_records(tmp_path):
    ret = tmp_path / "infoseek_test.jsonl"
    ret.write_text((SAMPLE_KB / "questions.jsonl").read_text())
    questions = read_questions("m2kr", ret).questions
    assert [q.split for q in questions] == ["InfoSeek"] * 6
    assert questions[0].positives == ["japan-0"] and questions[0].instruction

    base = {"question": "What is this?", "instruction": INSTRUCTION, "img_id": "oven_1",
            "answers": ["x"], "question_type": "okvqa"}
    path = write_parquet(tmp_path / "OKVQA_data" / "test.parquet", [
        {**base, "question_id": "a", "img_path": "/abs/oven_1.jpg", "pos_item_ids": ["p1"]},
        {**base, "question_id": "b", "img_path": None, "pos_item_ids": ["p2"]},
        {**base, "question_id": "c", "img_path": "../up.jpg", "pos_item_ids": ["p3"]}])
    a, b, c = read_questions("m2kr", path).questions
    assert a.image == "oven_1" and b.image == "oven_1"   # authors' absolute paths: the id
    assert c.image == "oven_1" and c.split == "OKVQA"
    broken = write_parquet(tmp_path / "x" / "test.parquet", [
        {**base, "question_id": "a", "img_path": None, "pos_item_ids": ["p1"]},
        {**base, "question_id": None, "img_path": None, "pos_item_ids": ["p1"]}])
    with pytest.raises(DatasetError, match="question_id.*missing required field"):
        read_questions("m2kr", broken)
    assert len(read_questions("m2kr", broken, skip_bad=True).questions) == 1
    typed = tmp_path / "evqa_test.jsonl"
    typed.write_text(json.dumps({"question_id": "q", "question": "?", "pos_item_ids": {"a": 1},
                                 "img_id": "i"}) + "\n")
    (question,) = read_questions("m2kr", typed).questions
    assert "pos_item_ids" in question.error


def _reference(records, questions, store, k):
    """R@k, PR@k, entity recall@k (percent) computed by hand from the records."""
    r = pr = er = 0
    for record in records:
        q = questions[record["data_id"]]
        top = store.get_many([h["passage_id"] for h in record["retrieved"][:k]])
        r += any(p.passage_id in q.positives for p in top)
        pr += any(a.lower() in p.text.lower() for p in top for a in q.answers)
        gold = {store.get(p).title for p in q.positives}
        er += any(p.title in gold for p in top)
    n = len(records)
    return 100 * r / n, 100 * pr / n, 100 * er / n


def test_runs_per_benchmark_and_the_ret_table(tmp_path, m2kr):
    reports = {}
    for name, ids in (("Infoseek", [0, 1, 2, 3]), ("EVQA", [4, 5])):
        path = data_file(tmp_path, name, ids)
        out = tmp_path / f"run-{name}"
        run_eval(RunSpec(dataset="m2kr", questions=str(path), images=str(SAMPLE_KB),
                         out=str(out), retrieval_only=True), m2kr["pipe"])
        report = write_report(out)
        records = read_predictions(out / "predictions.jsonl")
        questions = {q.data_id: q for q in read_questions("m2kr", path).questions}
        with PassageStore.open(m2kr["kb"]) as store:
            expected = _reference(records, questions, store, 5)
        label = "InfoSeek" if name == "Infoseek" else "E-VQA"
        split = report["retrieval"]["per_split"][label]
        assert (split["recall"]["@5"], split["pseudo_recall"]["@5"],
                split["entity_recall"]["@5"]) == pytest.approx(expected)
        assert report["retrieval"]["ks"] == [1, 5] and "@10" not in split["recall"]
        reports[label] = (out, split)

    code, table = _table([str(reports["InfoSeek"][0]), str(reports["E-VQA"][0])])
    assert code == 0
    assert table["columns"] == ["InfoSeek R@5", "InfoSeek PR@5", "E-VQA R@5", "E-VQA PR@5"]
    (row,) = table["rows"]  # one model: one row, as in the ReT README
    assert row["retriever"] == "tiny"
    for label, (_, split) in reports.items():
        assert row["values"][f"{label} R@5"] == split["recall"]["@5"]
        assert row["values"][f"{label} PR@5"] == split["pseudo_recall"]["@5"]
    markdown = table_markdown(m2kr_table([("a", {"retrieval": {"per_split": {
        "WIT": {"recall": {"@10": 50.0}}}}, "models": {"retriever": "m"}})]))
    assert "| a | m | 50.0 |" in markdown and "WIT R@10" in markdown


def _table(runs):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = in_process(["eval", "table", *runs, "--json"])
    return code, json.loads(buffer.getvalue())

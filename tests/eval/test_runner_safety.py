"""`eval run` never mixes, loses or silently fails results: run identity, duplicate ids, inputs
checked before the first question, failures isolated per question, --retry-failed."""

import json
import os
import shutil

import pytest

import eval.runner as runner
from eval.datasets import DatasetError
from eval.report import write_report
from eval.runner import PREDICTIONS, RunMismatchError, RunSpec, read_predictions, run_eval
from rag_vqa import RagVQA, load_config
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB
from tests.eval.evaldata import evqa_files, infoseek_files


class Untouchable:
    """A pipeline that must not be used: inputs are checked before anything is loaded."""

    def __getattr__(self, name):
        raise AssertionError(f"the pipeline was used ({name}) before the inputs were checked")


def stable(records):
    return [{k: v for k, v in r.items() if k != "timings"} for r in records]


def ret_questions(tmp_path, rows=None, name="questions.jsonl"):
    rows = rows if rows is not None else [json.loads(line) for line in
                                          (SAMPLE_KB / "questions.jsonl").read_text().splitlines()]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_restart_with_other_inputs_is_refused_naming_what_differs(tmp_path, pipe, cache):
    questions = ret_questions(tmp_path)
    base = dict(dataset="ret-jsonl", questions=str(questions), images=str(SAMPLE_KB),
                out=str(tmp_path / "run"), retrieval_only=True)
    run_eval(RunSpec(**base), pipe)
    predictions = tmp_path / "run" / "predictions.jsonl"
    before = predictions.read_bytes()
    images = shutil.copytree(SAMPLE_KB, tmp_path / "images")
    index = shutil.copytree(pipe.config.index.path, tmp_path / "index")
    (tmp_path / "map.json").write_text("{}")
    other_index = RagVQA(load_config(None, profile="tiny", k=4, index={
        "path": str(index), "kb": str(cache / "kb")}), retriever=pipe.components.retriever)
    other_k = sample_pipeline("tiny", cache, k=3)
    edited = tmp_path / "edited.jsonl"
    cases = [({"images": str(images)}, pipe, "images: was"),
             ({"k": 2}, pipe, "k: was 4, now 2"),
             ({"image_map": str(tmp_path / "map.json")}, pipe, "image_map: was null"),
             ({"shard": (0, 2)}, pipe, r"shard: was \[0, 1\], now \[0, 2\]"),
             ({"questions": str(edited)}, pipe, "questions.digest: was"),
             ({}, other_k, "pipeline.k: was 4, now 3"),
             ({}, other_index, "pipeline.index.path: was"),
             ({"retrieval_only": False}, pipe, "retrieval_only: was true, now false")]
    edited.write_text(questions.read_text().replace("Which", "Whose"))
    for changes, pipeline, words in cases:
        with pytest.raises(RunMismatchError, match=words) as info:
            run_eval(RunSpec(**{**base, **changes}), pipeline)
        assert f"Use another --out, or delete {tmp_path / 'run'} to start over" in str(info.value)
        assert predictions.read_bytes() == before
    # what does not change a finished record may change: the selection and the batch size,
    # and for retrieval the generator
    run_eval(RunSpec(**{**base, "limit": 3, "batch_size": 2}), pipe)
    run_eval(RunSpec(**base), sample_pipeline("tiny", cache, k=4, generator={
        "max_new_tokens": 9}))
    assert predictions.read_bytes() == before


def test_answers_are_tied_to_the_generator(tmp_path, pipe, cache):
    base = dict(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                images=str(SAMPLE_KB), out=str(tmp_path / "run"), limit=1)
    run_eval(RunSpec(**base), pipe)
    other = sample_pipeline("tiny", cache, k=4, generator={"max_new_tokens": 7})
    with pytest.raises(RunMismatchError, match="generator.max_new_tokens: was 6, now 7"):
        run_eval(RunSpec(**base), other)


def test_repeated_data_ids_are_refused_before_anything_runs(tmp_path):
    rows = [json.loads(line) for line in (SAMPLE_KB / "questions.jsonl").read_text().splitlines()]
    path = ret_questions(tmp_path, rows + [rows[1]])
    spec = RunSpec(dataset="ret-jsonl", questions=str(path), images=str(SAMPLE_KB),
                   out=str(tmp_path / "run"))
    with pytest.raises(DatasetError, match=rf"data_id {rows[1]['data_id']!r} on lines 2, 7"):
        run_eval(spec, Untouchable())
    assert not (tmp_path / "run").exists()


def infoseek_spec(tmp_path, files, **changes):
    return RunSpec(**{**dict(dataset="infoseek", questions=str(files["questions"]),
                             images=str(files["images"]), out=str(tmp_path / "run"),
                             qtypes=str(files["qtypes"]), withkb=str(files["withkb"])),
                      **changes})


def test_every_input_is_checked_before_the_first_question(tmp_path):
    files = infoseek_files(tmp_path)
    qtypes = files["qtypes"].read_text().splitlines()
    (tmp_path / "short_qtypes.jsonl").write_text("\n".join(qtypes[:-1]) + "\n")
    (tmp_path / "bad_qtypes.jsonl").write_text("\n".join(qtypes[:2] + ["{oops"]) + "\n")
    rows = [json.loads(line) for line in files["questions"].read_text().splitlines()]
    del rows[4]["answer_eval"]
    (tmp_path / "no_answer_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "map.json").write_text("[1, 2]")
    os.mkfifo(tmp_path / "fifo")
    evqa = evqa_files(tmp_path / "evqa")
    csv_text = evqa["questions"].read_text().replace("multi_answer", "multiple")
    (tmp_path / "bad.csv").write_text(csv_text)
    cases = [
        ({"qtypes": str(tmp_path / "short_qtypes.jsonl")}, "is not in the question type file"),
        ({"qtypes": str(tmp_path / "bad_qtypes.jsonl")}, r"bad_qtypes.jsonl:3: invalid JSON"),
        ({"questions": str(tmp_path / "no_answer_eval.jsonl")}, "'answer_eval'"),
        ({"image_map": str(tmp_path / "map.json")}, "expected a JSON object"),
        ({"images": str(tmp_path / "fifo")}, r"is a FIFO \(named pipe\), not a folder"),
        ({"questions": str(tmp_path / "fifo")}, r"is a FIFO \(named pipe\), not a file"),
        ({"questions": "/dev/zero"}, "is a character device, not a file"),
        ({"config": str(tmp_path / "none.toml")}, "--config file .* does not exist"),
        ({"index": str(files["qtypes"])}, "--index folder .* is a file, not a folder"),
        ({"dataset": "evqa", "questions": str(tmp_path / "bad.csv"), "qtypes": None,
          "withkb": None, "images": str(evqa["images"])}, "unknown question_type 'multiple'"),
        ({"k": 0}, "--k must be"), ({"batch_size": 0}, "--batch-size must be"),
        ({"limit": -1}, "--limit must be"), ({"shard": (2, 2)}, "--shard"),
    ]
    for changes, words in cases:
        with pytest.raises(ValueError, match=words):
            run_eval(infoseek_spec(tmp_path, files, **changes), Untouchable())
        assert not (tmp_path / "run").exists(), changes


def test_one_bad_question_never_costs_its_batch(tmp_path, pipe):
    rows = [json.loads(line) for line in (SAMPLE_KB / "questions.jsonl").read_text().splitlines()]
    images = shutil.copytree(SAMPLE_KB, tmp_path / "images")
    os.mkfifo(images / "pipe.jpg")
    (images / "folder.jpg").mkdir()
    good = [dict(r, data_id=f"good{i}") for i, r in enumerate(rows[:3])]
    good[1]["question"] += " \u2028 and\x85more"  # line separators inside a prompt
    bad = [dict(rows[0], data_id="fifo", image_path="pipe.jpg"),
           dict(rows[0], data_id="folder", image_path="folder.jpg"),
           dict(rows[0], data_id="missing", image_path="nope.jpg"),
           dict(rows[0], data_id="typed", question={"not": "text"}),
           dict(rows[0], data_id="script", image_path="javascript:alert(1)"),
           dict(rows[0], data_id="int", image_path=7),
           dict(rows[0], data_id="empty", question="  ", instruction=None)]
    mixed = [bad[0], good[0], bad[1], bad[2], good[1], bad[3], bad[4], good[2], bad[5], bad[6]]
    common = dict(dataset="ret-jsonl", images=str(images), batch_size=len(mixed))
    summary = run_eval(RunSpec(questions=str(ret_questions(tmp_path, mixed)),
                               out=str(tmp_path / "mixed"), **common), pipe)
    alone = run_eval(RunSpec(questions=str(ret_questions(tmp_path, good, "good.jsonl")),
                             out=str(tmp_path / "good"), **common), pipe)
    assert alone.complete and (summary.answered, summary.failed) == (3, 7)
    records = {r["data_id"]: r for r in read_predictions(tmp_path / "mixed" / PREDICTIONS)}
    reference = read_predictions(tmp_path / "good" / PREDICTIONS)
    assert stable([records[r["data_id"]] for r in reference]) == stable(reference)
    reasons = {k: records[k]["error"] for k in records if records[k]["status"] == "failed"}
    assert "is a FIFO (named pipe)" in reasons["fifo"] and "is a folder" in reasons["folder"]
    assert "not found under" in reasons["missing"] and "the question is empty" in reasons["empty"]
    assert "field 'question': expected a string, got dict" in reasons["typed"]
    assert "'javascript' scheme" in reasons["script"]
    assert "field 'image_path': expected a string, got int" in reasons["int"]
    assert summary.failed_total == 7 and not summary.complete and summary.failure_reasons
    report = write_report(tmp_path / "mixed")
    assert report["coverage"]["failed"] == 7 and sum(f["count"] for f in report["failures"]) == 7


def test_retry_failed_runs_them_again_and_never_keeps_two_records(tmp_path, pipe, monkeypatch):
    files = infoseek_files(tmp_path)
    straight = run_eval(infoseek_spec(tmp_path, files, out=str(tmp_path / "straight")), pipe)
    image = files["images"] / "oven_00002.jpg"
    kept = image.read_bytes()
    image.unlink()
    first = run_eval(infoseek_spec(tmp_path, files, batch_size=2), pipe)
    assert (first.failed, first.failed_total, first.complete) == (1, 1, False)
    image.write_bytes(kept)
    again = run_eval(infoseek_spec(tmp_path, files), pipe)  # without --retry-failed: kept
    assert (again.already_done, again.failed_total) == (6, 1)

    def killed(*args):
        raise KeyboardInterrupt  # killed while the failed question runs again

    monkeypatch.setattr(runner, "_process", killed)
    with pytest.raises(KeyboardInterrupt):
        run_eval(infoseek_spec(tmp_path, files, retry_failed=True), pipe)
    records = read_predictions(tmp_path / "run" / PREDICTIONS)
    assert len(records) == 5 and all(r["status"] == "ok" for r in records)  # nothing lost
    monkeypatch.undo()
    retried = run_eval(infoseek_spec(tmp_path, files, retry_failed=True), pipe)
    assert retried.complete and (retried.answered, retried.failed_total) == (1, 0)
    records = read_predictions(tmp_path / "run" / PREDICTIONS)
    ids = [r["data_id"] for r in records]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == straight.selected
    expected = {r["data_id"]: r for r in read_predictions(tmp_path / "straight" / PREDICTIONS)}
    assert stable(records) == stable([expected[i] for i in ids])
    report = write_report(tmp_path / "run")
    assert report["coverage"] == {"selected": 6, "done": 6, "failed": 0, "remaining": 0}


def test_a_damaged_or_foreign_run_folder_is_refused(tmp_path, pipe):
    spec = RunSpec(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                   images=str(SAMPLE_KB), out=str(tmp_path / "run"), retrieval_only=True)
    run_eval(spec, pipe)
    run_file = tmp_path / "run" / "run.json"
    saved = json.loads(run_file.read_text())
    run_file.write_text(json.dumps({**saved, "identity": {"dataset": "ret-jsonl"}}))
    with pytest.raises(RunMismatchError, match="started by another version"):
        run_eval(spec, pipe)
    run_file.write_text(json.dumps(saved))
    predictions = tmp_path / "run" / PREDICTIONS
    lines = predictions.read_bytes().split(b"\n")
    predictions.write_bytes(b"\n".join([lines[0], b'{"data_id": "q', *lines[1:]]))
    with pytest.raises(RunMismatchError, match=r"predictions.jsonl:2 is damaged"):
        run_eval(spec, pipe)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / PREDICTIONS).write_text("{}\n")
    with pytest.raises(RunMismatchError, match="no run.json"):
        run_eval(RunSpec(**{**spec.__dict__, "out": str(tmp_path / "other")}), pipe)

"""`eval run` end to end with the tiny models on the bundled sample knowledge base."""

import os
import signal
import subprocess
import sys
import time

import pytest

from eval.metrics import load_infoseek_references, score_infoseek
from eval.report import write_report
from eval.runner import RunMismatchError, RunSpec, read_predictions, run_eval
from rag_vqa.samples import SAMPLE_KB
from retriever.fileio import DIGEST, file_digest
from tests.eval.evaldata import evqa_files, infoseek_files


def stable(records):
    """Records without timings (which differ between runs)."""
    return [{k: v for k, v in r.items() if k != "timings"} for r in records]


def test_infoseek_run_writes_predictions_and_an_official_report(tmp_path, pipe):
    files = infoseek_files(tmp_path)
    spec = RunSpec(dataset="infoseek", questions=str(files["questions"]),
                   images=str(files["images"]), out=str(tmp_path / "run"),
                   qtypes=str(files["qtypes"]), withkb=str(files["withkb"]), batch_size=4)
    summary = run_eval(spec, pipe)
    assert (summary.selected, summary.answered, summary.failed) == (6, 6, 0)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert [r["data_id"] for r in records] == [f"infoseek_val_000{i:02d}" for i in range(6)]
    for r in records:
        assert r["status"] == "ok" and len(r["retrieved"]) == 4 and r["prompt"]
        assert set(r["timings"]) >= {"encode_query", "search", "generate"}
    report = write_report(tmp_path / "run")
    refs = load_infoseek_references(files["questions"], files["qtypes"])
    expected = score_infoseek([{"data_id": r["data_id"], "prediction": r["prediction"]}
                               for r in records], refs).to_json()
    assert report["qa"]["infoseek"]["final_score"] == expected["final_score"]
    assert report["retrieval"]["entity_recall"]["@1"] in [pytest.approx(100 * i / 6)  # percent
                                                          for i in range(7)]
    assert report["retrieval"]["pseudo_recall"] is not None
    assert report["dataset_files"]["questions"]["digest"] == \
        f"{DIGEST}:{file_digest(files['questions'])}"
    assert report["versions"]["torch"] and report["models"]["generator"]
    for name in ("report.json", "report.md", "recall_at_k.png", "accuracy.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert "final score (harmonic mean of split scores)" in \
        (tmp_path / "run" / "report.md").read_text()


def test_evqa_run_with_missing_and_broken_images(tmp_path, pipe):
    files = evqa_files(tmp_path)
    (files["images"] / "1110f00d1.jpg").unlink()                 # missing image
    (files["images"] / "2220f00d2.jpg").write_bytes(b"broken")   # unreadable image
    spec = RunSpec(dataset="evqa", questions=str(files["questions"]),
                   images=str(files["images"]), out=str(tmp_path / "run"), batch_size=3)
    summary = run_eval(spec, pipe)
    assert (summary.answered, summary.failed) == (4, 2)
    records = {r["data_id"]: r for r in read_predictions(tmp_path / "run" / "predictions.jsonl")}
    assert records["1"]["status"] == "failed" and "not found" in records["1"]["error"]
    assert records["2"]["status"] == "failed" and "2220f00d2.jpg" in records["2"]["error"]
    report = write_report(tmp_path / "run")
    evqa = report["qa"]["evqa"]
    assert evqa["method"] == "EM" and evqa["all"]["count"] == 6
    assert evqa["single_hop"]["count"] == 5 and report["coverage"]["failed"] == 2
    assert report["failures"]


def test_retrieval_only_limit_and_shards(tmp_path, pipe):
    spec = RunSpec(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                   images=str(SAMPLE_KB), out=str(tmp_path / "a"), retrieval_only=True,
                   shard=(1, 2), limit=2)
    run_eval(spec, pipe)
    records = read_predictions(tmp_path / "a" / "predictions.jsonl")
    assert [r["data_id"] for r in records] == ["q2", "q4"]
    assert all(r["prediction"] is None and r["retrieved"] for r in records)
    report = write_report(tmp_path / "a")
    assert report["qa"] is None and report["retrieval"]["recall"] is not None
    with pytest.raises(RunMismatchError, match="retrieval_only: was true, now false"):
        run_eval(RunSpec(**{**spec.__dict__, "retrieval_only": False}), pipe)
    with pytest.raises(ValueError, match="--shard"):
        run_eval(RunSpec(**{**spec.__dict__, "out": str(tmp_path / "b"), "shard": (2, 2)}), pipe)


def test_a_restarted_run_continues_without_duplicates(tmp_path, pipe):
    files = infoseek_files(tmp_path, repeat=2)
    common = dict(dataset="infoseek", questions=str(files["questions"]),
                  images=str(files["images"]), qtypes=str(files["qtypes"]), batch_size=2)
    run_eval(RunSpec(out=str(tmp_path / "straight"), **common), pipe)
    run_eval(RunSpec(out=str(tmp_path / "resumed"), limit=5, **common), pipe)
    predictions = tmp_path / "resumed" / "predictions.jsonl"
    with open(predictions, "a") as handle:
        handle.write('{"data_id": "infoseek_val_00005", "predic')  # torn by a kill
    summary = run_eval(RunSpec(out=str(tmp_path / "resumed"), **common), pipe)
    assert summary.already_done == 5
    assert stable(read_predictions(predictions)) == \
        stable(read_predictions(tmp_path / "straight" / "predictions.jsonl"))


def test_reports_follow_a_changed_limit_and_never_touch_a_live_file(tmp_path, pipe):
    common = dict(dataset="ret-jsonl", questions=str(SAMPLE_KB / "questions.jsonl"),
                  images=str(SAMPLE_KB), out=str(tmp_path / "run"), retrieval_only=True)
    run_eval(RunSpec(limit=2, **common), pipe)
    run_eval(RunSpec(limit=4, **common), pipe)    # restarted with a larger --limit
    assert write_report(tmp_path / "run")["coverage"]["selected"] == 4
    run_eval(RunSpec(limit=3, **common), pipe)    # and a smaller one: four records, three chosen
    report = write_report(tmp_path / "run")
    assert report["coverage"] == {"selected": 3, "done": 3, "failed": 0, "remaining": 0}
    predictions = tmp_path / "run" / "predictions.jsonl"
    with open(predictions, "a") as handle:
        handle.write('{"data_id": "q5", "predic')  # a writer mid-line
    before = predictions.read_bytes()
    write_report(tmp_path / "run")
    assert predictions.read_bytes() == before


def test_eval_run_killed_with_sigkill_resumes_to_the_same_predictions(tmp_path, cache, pipe):
    files = infoseek_files(tmp_path, repeat=15)       # 90 questions
    index = next(cache.glob("index-*"))
    config = tmp_path / "rag.toml"
    config.write_text(f'profile = "tiny"\nk = 3\n[index]\npath = "{index}"\nkb = "{cache / "kb"}"'
                      '\n[generator]\nmax_new_tokens = 4\n')
    args = ["--dataset", "infoseek", "--questions", str(files["questions"]), "--images",
            str(files["images"]), "--qtypes", str(files["qtypes"]), "--config", str(config),
            "--batch-size", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def cli(out):
        return subprocess.Popen([sys.executable, "-m", "rag_vqa", "eval", "run", *args,
                                 "--out", str(out)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    straight = cli(tmp_path / "straight")
    assert straight.wait(timeout=600) == 0, straight.stderr.read()
    victim = cli(tmp_path / "killed")
    predictions = tmp_path / "killed" / "predictions.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if predictions.exists() and predictions.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = len(read_predictions(predictions))
    assert 10 <= done < 90, "the run was not interrupted mid-way"
    resumed = cli(tmp_path / "killed")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"{done} already done" in out
    assert stable(read_predictions(predictions)) == \
        stable(read_predictions(tmp_path / "straight" / "predictions.jsonl"))

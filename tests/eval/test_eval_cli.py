"""`rag-vqa eval run` / `eval report` through the real command line."""

import json
import os
import subprocess
import sys

import pytest

from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB


def in_process(argv):
    """The exit code of ``rag-vqa ARGV`` run in this process (usage errors included)."""
    from rag_vqa.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def cli(*args):
    return subprocess.run([sys.executable, "-m", "rag_vqa", "eval", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    sample_pipeline("tiny", cache)  # imports and indexes the sample
    index = next(cache.glob("index-*"))
    path = cache / "rag.toml"
    path.write_text(f'profile = "tiny"\nk = 3\n[index]\npath = "{index}"\n')
    return path


def test_run_then_report_as_json(tmp_path, config):
    out = tmp_path / "run"
    run = cli("run", "--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
              "--images", str(SAMPLE_KB), "--config", str(config), "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["done"] == 6 and summary["failed"] == 0
    assert summary["retrieval"]["recall"]["@1"] >= 0 and "exact_match" in summary["qa"]
    report = cli("report", str(out))
    assert report.returncode == 0 and "## Retrieval" in report.stdout
    assert json.loads((out / "report.json").read_text())["coverage"]["done"] == 6


def test_bad_arguments_exit_2(tmp_path, config):
    missing = cli("run", "--dataset", "evqa", "--questions", str(tmp_path / "none.csv"),
                  "--images", str(SAMPLE_KB), "--config", str(config), "--out", str(tmp_path))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    shard = cli("run", "--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
                "--images", str(SAMPLE_KB), "--config", str(config), "--out", str(tmp_path / "x"),
                "--shard", "three")
    assert shard.returncode == 2 and "--shard must look like 0/4" in shard.stderr


def test_a_run_where_questions_failed_exits_1_with_the_report_written(tmp_path, config):
    images = tmp_path / "empty"
    images.mkdir()  # no image can be found: every question fails
    out = tmp_path / "run"
    run = cli("run", "--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
              "--images", str(images), "--config", str(config), "--out", str(out),
              "--retrieval-only")
    assert run.returncode == 1, run.stderr
    assert "6 of 6 questions failed (most common: 6 x cannot use image '...': not found " \
           "under ...)" in run.stderr and "--retry-failed" in run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["coverage"]["failed"] == 6 and report["failures"][0]["count"] == 6


@pytest.mark.parametrize("flags,words", [
    (["--k", "0"], "--k: must be at least 1, got 0"),
    (["--k", "five"], "--k: expected a positive whole number, got 'five'"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--limit", "-1"], "--limit: must be at least 0"),
    (["--shard", "2/2"], "--shard i/n needs 0 <= i < n"),
    (["--shard", "0/0"], "--shard i/n needs 0 <= i < n"),
    (["--dataset", "coco"], "invalid choice: 'coco'"),
])
def test_bad_flags_are_refused_by_name(flags, words, capsys):
    argv = ["eval", "run", "--dataset", "ret-jsonl", "--questions", "q.jsonl", "--images", ".",
            "--out", "run", *flags]
    assert in_process(argv) == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("flags,words", [
    (["--bem-batch-size", "0"], "--bem-batch-size: must be at least 1"),
    (["--bem-device", "banana"], "--bem-device"),
])
def test_bad_score_flags_are_refused_by_name(flags, words, capsys):
    argv = ["eval", "score", "evqa", "--predictions", "p", "--references", "r", *flags]
    assert in_process(argv) == 2 and words in capsys.readouterr().err


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert in_process(["eval", "report", str(tmp_path)]) == 2
    assert "is not an evaluation run folder" in capsys.readouterr().err

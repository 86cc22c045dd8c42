"""`rag-vqa eval run` / `eval report` through the real command line."""

import json
import os
import subprocess
import sys

import pytest

from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB


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

"""The rag-vqa command, run as a user would (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rag_vqa", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                       **(env or {})})


def test_retriever_demo_json_with_the_tiny_model():
    result = run("retriever", "demo", "--retriever", "tiny", "--json", "-k", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["is_tiny"] and "meaningless" in report["note"]
    assert report["feature_shape"] == [32, 128] and report["num_documents"] == 60
    assert len(report["queries"]) == 6
    for query in report["queries"]:
        scores = [d["score"] for d in query["ranking"]]
        assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    assert set(report["seconds"]) == {"encode_documents", "encode_queries", "search"}


def test_retriever_demo_text_output_says_the_tiny_model_is_meaningless(tmp_path):
    # auto with an empty hub cache falls back to tiny and says why
    result = run("retriever", "demo", env={"HF_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "is not downloaded" in result.stdout and "UNTRAINED" in result.stdout
    assert "hit@1" in result.stdout


def test_retriever_info_on_a_released_layout_folder(fixtures_dir):
    result = run("retriever", "info", str(fixtures_dir / "ret_reference_tiny"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["towers"]["query"]["layer_strategy"] == "clip_vit_b"
    assert info["towers"]["passage"]["steps"] == 12


def test_exit_codes_for_bad_usage_and_bad_input(tmp_path):
    assert run("retriever", "frobnicate").returncode == 2
    missing = run("retriever", "demo", "--retriever", str(tmp_path / "nothing-here"))
    assert missing.returncode == 2 and "no such checkpoint folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_k = run("retriever", "demo", "--retriever", "tiny", "-k", "0")
    assert bad_k.returncode == 2 and "argument -k: must be at least 1, got 0" in bad_k.stderr
    assert run("--version").stdout.startswith("rag-vqa ")
    assert run("retriever", "demo", "--help").returncode == 0


@pytest.mark.parametrize("args,words", [
    (["retriever", "demo", "--dtype", "banana"], "argument --dtype: unknown dtype 'banana'"),
    (["retriever", "demo", "--device", "cuda"], "CUDA is not available"),
    (["retriever", "demo", "--device", "gpu7"], "unknown device 'gpu7'"),
    (["ask", "x.jpg", "q", "--k", "0"], "argument --k: must be at least 1, got 0"),
    (["ask", "x.jpg", "q", "--max-new-tokens", "-3"], "must be at least 1"),
    (["index", "build", "kb", "--out", "ix", "--batch-size", "many"],
     "expected a positive whole number, got 'many'"),
    (["kb", "import", "--format", "ret-jsonl", "a.jsonl", "--out", "kb", "--limit", "-1"],
     "must be at least 0"),
    (["train", "--max-steps", "0"], "must be at least 1"),
    (["retriever", "frobnicate"], "invalid choice"),
])
def test_bad_flags_are_refused_at_parse_time_as_text_and_as_json(args, words, capsys):
    from rag_vqa.cli import main  # in-process: parsing fails before anything loads

    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.startswith("usage:")
    assert main([*args, "--json"]) == 2
    out = capsys.readouterr().out
    error = json.loads(out)
    assert words in error["error"] and error["kind"] == "usage" and error["exit_code"] == 2


def test_errors_under_json_are_json(tmp_path):
    result = run("ask", str(tmp_path), "What?", "--sample", "--json")
    assert result.returncode == 2 and result.stderr == ""
    assert json.loads(result.stdout) == {
        "error": f"image {tmp_path} is a folder, not a regular file", "kind": "input",
        "type": "ValueError", "exit_code": 2}
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = run("ask", str(fifo), "What?", "--sample", "--json")  # must not block on the FIFO
    assert "a FIFO (named pipe)" in json.loads(result.stdout)["error"]
    info = run("index", "info", str(tmp_path), "--json")
    assert info.returncode == 2 and "no manifest.json" in json.loads(info.stdout)["error"]


def test_index_info_names_a_missing_manifest_field(tmp_path):
    import numpy as np

    from retriever.fileio import seal
    from retriever.index import MultiVectorIndex

    index = MultiVectorIndex.build(tmp_path / "ix", ["a", "b"],
                                   np.ones((2, 32, 128), np.float16), method="exact")
    manifest = json.loads((index.path / "manifest.json").read_text())
    del manifest["counts"]
    (index.path / "manifest.json").write_text(json.dumps(seal(manifest)))  # sealed, yet partial
    result = run("index", "info", str(index.path))
    assert result.returncode == 2 and "field 'counts' is missing" in result.stderr
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr


def test_ask_with_the_sample_prints_answer_and_evidence(tmp_path):
    from rag_vqa.samples import question_image, sample_questions

    q = sample_questions()[0]
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    result = run("ask", str(question_image(q)), q.question, "--sample", "--profile", "tiny",
                 "--k", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["question"] == q.question and len(answer["evidence"]) == 3
    assert [e["rank"] for e in answer["evidence"]] == [1, 2, 3]
    assert "meaningless" in answer["note"]
    text = run("ask", str(question_image(q)), q.question, "--sample", "--profile", "tiny",
               env=env)
    assert text.returncode == 0 and "answer:" in text.stdout and "[1]" in text.stdout


def test_ask_errors_are_clear(tmp_path):
    from rag_vqa.samples import question_image, sample_questions

    image = str(question_image(sample_questions()[0]))
    no_index = run("ask", image, "What?", "--profile", "tiny")
    assert no_index.returncode == 2 and "no index configured" in no_index.stderr
    missing = run("ask", str(tmp_path / "nope.jpg"), "What?", "--sample", "--profile", "tiny",
                  env={"XDG_CACHE_HOME": str(tmp_path)})
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_config = tmp_path / "rag.toml"
    bad_config.write_text("k = 0\n")
    config = run("ask", image, "What?", "--config", str(bad_config))
    assert config.returncode == 2 and "k must be a positive integer" in config.stderr
    assert "Traceback" not in no_index.stderr + missing.stderr + config.stderr


def test_quickstart_runs_end_to_end_with_the_tiny_models(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = run("quickstart", "--profile", "tiny", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["profile"] == "tiny" and "UNTRAINED" in report["note"]
    assert "trained on" not in report["note"]  # never a trained-model claim for tiny models
    assert len(report["answers"]) == 6
    assert all(len(a["evidence"]) == 3 and a["error"] is None for a in report["answers"])
    assert (tmp_path / "rag-vqa" / "quickstart" / "kb" / "manifest.json").is_file()
    assert report["kb"] == str(tmp_path / "rag-vqa" / "quickstart" / "kb")
    assert (Path(report["index"]) / "manifest.json").is_file()
    again = run("quickstart", "--profile", "tiny", env=env)
    assert again.returncode == 0 and "meaningless" in again.stdout
    assert f"knowledge base: {report['kb']}" in again.stdout


SAMPLE_NOTE = "ReT trained on the 30-flag sample; SmolLM2-135M (text only); not the released ReT"


@pytest.mark.slow
def test_quickstart_answers_offline_with_the_sample_profile(tmp_path):
    """What a newcomer without hub access gets from `make quickstart`: the `sample` profile,
    the right passage first for at least 5 of the 6 questions and at least 4 right answers
    under the official E-VQA exact match."""
    from rag_vqa.quickstart import answer_is_right

    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = run("quickstart", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["profile"] == "sample" and "not downloaded" in report["reason"]
    assert report["note"] == SAMPLE_NOTE and "UNTRAINED" not in result.stdout
    assert report["retrieval_hits"] >= 5 and report["answer_hits"] >= 4, report
    for answer in report["answers"]:
        assert answer["note"] == SAMPLE_NOTE and answer["error"] is None
        assert answer["correct"] == answer_is_right(answer["answer"], answer["expected"])
        assert answer["used_passages"] == [answer["evidence"][0]["passage_id"]]
    text = run("quickstart", env=env)
    assert text.returncode == 0 and f"answered by: {SAMPLE_NOTE}" in text.stdout
    assert "knowledge base: " in text.stdout and "index: " in text.stdout


def test_auto_picks_default_when_downloaded_else_the_sample(monkeypatch):
    from rag_vqa import quickstart

    monkeypatch.setattr(quickstart, "_cached", lambda name: True)
    assert quickstart.choose_profile("auto") == ("default", "")
    monkeypatch.setattr(quickstart, "_cached", lambda name: False)
    profile, reason = quickstart.choose_profile("auto")
    assert profile == "sample" and "not downloaded" in reason
    monkeypatch.setattr(quickstart, "sample_available", lambda: "SmolLM2 is not installed")
    profile, reason = quickstart.choose_profile("auto")
    assert profile == "tiny" and "UNTRAINED" in reason and "SmolLM2" in reason
    assert quickstart.choose_profile("small") == ("small", "")


def test_demo_help():
    result = run("demo", "--help")
    assert result.returncode == 0 and "--sample" in result.stdout and "--port" in result.stdout

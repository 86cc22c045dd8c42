"""The rag-vqa command, run as a user would (a subprocess)."""

import json
import os
import subprocess
import sys


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
    assert bad_k.returncode == 2 and "-k must be at least 1" in bad_k.stderr
    assert run("--version").stdout.startswith("rag-vqa ")
    assert run("retriever", "demo", "--help").returncode == 0


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


def test_quickstart_runs_end_to_end(tmp_path):
    result = run("quickstart", "--json", env={"XDG_CACHE_HOME": str(tmp_path),
                                               "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["profile"] == "tiny" and "not downloaded" in report["note"]
    assert len(report["answers"]) == 6
    assert all(len(a["evidence"]) == 3 and a["error"] is None for a in report["answers"])
    assert (tmp_path / "rag-vqa" / "quickstart" / "kb" / "manifest.json").is_file()
    again = run("quickstart", env={"XDG_CACHE_HOME": str(tmp_path),
                                   "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert again.returncode == 0 and "meaningless" in again.stdout


def test_demo_help():
    result = run("demo", "--help")
    assert result.returncode == 0 and "--sample" in result.stdout and "--port" in result.stdout

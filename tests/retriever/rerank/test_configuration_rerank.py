import pytest

from retriever.rerank import RerankerConfig


def test_round_trip_through_a_folder(tmp_path):
    config = RerankerConfig(kind="cross-encoder", model="BAAI/bge-reranker-base", top=5,
                            batch_size=16, yes_words=["oui"])
    config.save_pretrained(tmp_path)
    again = RerankerConfig.from_pretrained(tmp_path)
    assert again == config and again.yes_words == ("oui",)
    assert again.name == "cross-encoder:BAAI/bge-reranker-base"


@pytest.mark.parametrize("values, message", [
    ({"kind": "bm25"}, "kind must be one of"),
    ({"kind": "mllm"}, "needs reranker.model"),
    ({"kind": "article", "model": "x"}, "uses no model"),
    ({"kind": "article", "top": 0}, "top must be"),
    ({"kind": "article", "batch_size": True}, "batch_size must be"),
    ({"kind": "article", "aggregate": "mean"}, "aggregate must be"),
    ({"kind": "causal-lm", "model": "m", "prompt": "{passage} only"}, "must use"),
    ({"kind": "causal-lm", "model": "m", "prompt": "{question} {passage} {rank}"}, "must use"),
    ({"kind": "causal-lm", "model": "m", "no_words": []}, "non-empty"),
    ({"kind": "article", "colour": 1}, "unknown reranker option"),
    ({"model": "m"}, "needs kind"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        RerankerConfig.from_dict(values)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="reranker_config.json does not exist"):
        RerankerConfig.from_pretrained(tmp_path)

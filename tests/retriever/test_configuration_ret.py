import json

import pytest

from retriever.configuration_ret import ConfigError, ReTConfig, ReTRetrieverConfig
from retriever.tiny import tiny_retriever_config

# The table of spec section 2, written out literally.
SPEC_TABLE = {
    "clip_vit_b": (list(range(12)), list(range(12))),
    "clip_vit_l": (list(range(12)), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]),
    "openclip_vit_h": ([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23],
                       [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31]),
    "openclip_vit_g": ([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 31],
                       [2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 44, 47]),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_layer_strategies_match_the_spec(name):
    cfg = ReTConfig(layer_strategy=name)
    text, vision = SPEC_TABLE[name]
    assert list(cfg.text_layer_indices) == text
    assert list(cfg.vision_layer_indices) == vision
    assert cfg.num_steps == (16 if name == "openclip_vit_g" else 12)


def test_explicit_layer_lists_and_derived_fields():
    cfg = ReTConfig(layer_strategy={"text": [0, 2], "vision": [1, 3]}, hidden_size=256)
    assert cfg.text_layer_indices == (0, 2) and cfg.vision_layer_indices == (1, 3)
    assert cfg.num_steps == 2
    assert cfg.intermediate_size == 1024 and cfg.num_attention_heads == 4
    assert cfg.output_dim == 128


@pytest.mark.parametrize("bad, message", [
    ({"layer_strategy": "clip_vit_x"}, "unknown layer_strategy"),
    ({"layer_strategy": {"text": [0, 1], "vision": [0]}}, "same length"),
    ({"layer_strategy": {"text": [-1], "vision": [0]}}, ">= 0"),
    ({"layer_strategy": {"text": [0]}}, "integer lists"),
    ({"hidden_size": 100}, "multiple of 64"),
    ({"activation_fn": "swish"}, "activation_fn"),
    ({"num_queries": 0}, "num_queries"),
    ({"text_config": {"hidden_size": 8}}, "model_type"),
])
def test_invalid_values_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        ReTConfig(**bad)


def test_strategy_beyond_backbone_depth_is_refused():
    cfg = tiny_retriever_config(text_layers=2, vision_layers=2).query_config
    cfg.layer_strategy = "clip_vit_b"
    with pytest.raises(ConfigError, match="reads text layer 11 but the text backbone has 2"):
        cfg.validate_backbones()


def test_released_config_json_with_generic_fields_is_accepted(fixtures_dir):
    raw = json.loads((fixtures_dir / "ret_reference_tiny" / "config.json").read_text())
    assert raw["transformers_version"] == "4.45.2" and "bad_words_ids" in raw["query_config"]
    raw.pop("model_type")
    cfg = ReTRetrieverConfig(**raw)
    q = cfg.query_config
    assert q.layer_strategy == "clip_vit_b" and q.hidden_size == 128
    assert q.input_gate_bias_prior == 0.5 and q.forget_gate_bias_prior == -0.25
    assert q.text_config.model_type == "clip_text_model"
    assert q.vision_config.model_type == "clip_vision_model"
    assert q.text_config.name_or_path == "tiny-clip"
    assert cfg.share_text_models and cfg.share_vision_models and not cfg.share_query_passage_models
    assert cfg.fg_loss and cfg.simmetric_loss
    # shared backbones are described once, by the query tower
    assert cfg.passage_config.text_config is q.text_config


def test_to_dict_round_trip_keeps_every_released_field():
    cfg = tiny_retriever_config(use_tanh=True, forget_gate_bias_prior=1.5)
    out = json.loads(json.dumps(cfg.to_dict()))
    assert out["model_type"] == "retriever" and out["architectures"] == ["RetrieverModel"]
    for field in ("text_config", "vision_config", "is_text_frozen", "is_vision_frozen",
                  "late_proj_output_size", "layer_strategy", "use_pooler_features", "num_queries",
                  "hidden_size", "dropout_p", "attention_dropout", "activation_fn",
                  "input_gate_bias_prior", "forget_gate_bias_prior", "use_tanh",
                  "intermediate_size", "num_attention_heads"):
        assert field in out["query_config"], field
    assert out["query_config"]["model_type"] == "ret"
    assert out["query_config"]["text_config"]["model_type"] == "clip_text_model"
    for flag in ("share_query_passage_models", "share_text_models", "share_vision_models",
                 "fg_loss", "simmetric_loss"):
        assert flag in out
    out.pop("model_type")
    again = ReTRetrieverConfig(**out)
    assert again.query_config.use_tanh and again.query_config.forget_gate_bias_prior == 1.5
    assert again.query_config.layer_strategy == cfg.query_config.layer_strategy


def test_passage_config_of_wrong_type_is_refused():
    with pytest.raises(ConfigError, match="expected 'ret'"):
        ReTRetrieverConfig(query_config={"model_type": "bert"})

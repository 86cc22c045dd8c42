"""Configuration of a ReT encoder (``model_type: "ret"``) and of the two-tower retriever
(``model_type: "retriever"``), field for field as in the released checkpoints.

The classes accept config.json files written by transformers 4.45 unchanged (generic fields such
as ``architectures`` or generation defaults are tolerated) and write the same layout back, so a
released-format loader can read what we save.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from .errors import UserError

__all__ = [
    "LAYER_STRATEGIES",
    "ReTConfig",
    "ReTRetrieverConfig",
    "ConfigError",
]


class ConfigError(UserError, ValueError):
    """A configuration value that cannot describe a valid ReT model."""


# Which backbone blocks feed recurrence step t (0-based indices into hidden_states[1:]).
LAYER_STRATEGIES: dict[str, dict[str, tuple[int, ...]]] = {
    "clip_vit_b": {"text": tuple(range(12)), "vision": tuple(range(12))},
    "clip_vit_l": {"text": tuple(range(12)), "vision": tuple(range(0, 24, 2))},
    "openclip_vit_h": {
        "text": tuple(range(1, 24, 2)),
        "vision": (0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31),
    },
    # 16 steps: 0, 2, ..., 28 then the last block, 31 (as the released model reads them)
    "openclip_vit_g": {
        "text": tuple(range(0, 29, 2)) + (31,),
        "vision": tuple(range(2, 48, 3)),
    },
}

_ACTIVATIONS = ("gelu", "relu")


def _backbone_config(value: Any, field: str) -> PretrainedConfig | None:
    """Turn a nested backbone config (dict as in config.json, or a config object) into an object."""
    if value is None or isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, Mapping):
        value = dict(value)
        model_type = value.pop("model_type", None)
        if not model_type:
            raise ConfigError(f"{field} has no 'model_type' (expected e.g. 'clip_text_model')")
        try:
            return AutoConfig.for_model(model_type, **value)
        except ValueError as exc:
            raise ConfigError(f"{field}: unknown backbone model_type {model_type!r}: "
                              f"{exc}") from exc
    raise ConfigError(f"{field} must be a dict or a transformers config, "
                      f"got {type(value).__name__}")


def _normalise_strategy(strategy: Any) -> str | dict[str, list[int]]:
    if isinstance(strategy, str):
        if strategy not in LAYER_STRATEGIES:
            known = ", ".join(sorted(LAYER_STRATEGIES))
            raise ConfigError(f"unknown layer_strategy {strategy!r}; known: {known}, or a dict "
                              "{'text': [...], 'vision': [...]} of explicit layer indices")
        return strategy
    if isinstance(strategy, Mapping):
        try:
            text = [int(i) for i in strategy["text"]]
            vision = [int(i) for i in strategy["vision"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError("an explicit layer_strategy needs integer lists under 'text' and "
                              f"'vision', got {dict(strategy)!r}") from exc
        if not text or len(text) != len(vision):
            raise ConfigError("explicit layer_strategy: 'text' and 'vision' must be non-empty "
                              "and of the same length (one pair per recurrence step), got "
                              f"{len(text)} and {len(vision)}")
        if min(text + vision) < 0:
            raise ConfigError("explicit layer_strategy: layer indices must be >= 0 (they index "
                              "hidden_states[1:], the embedding output is never used)")
        return {"text": text, "vision": vision}
    raise ConfigError(f"layer_strategy must be a name or a dict, got {type(strategy).__name__}")


class ReTConfig(PretrainedConfig):
    """One ReT encoder: frozen CLIP text and vision towers, per-step adapters, one recurrent cell
    shared across steps, and a late projection to ``late_proj_output_size`` dimensions."""

    model_type = "ret"

    def __init__(
        self,
        text_config: Mapping[str, Any] | PretrainedConfig | None = None,
        vision_config: Mapping[str, Any] | PretrainedConfig | None = None,
        is_text_frozen: bool = True,
        is_vision_frozen: bool = True,
        late_proj_output_size: int | None = 128,
        layer_strategy: str | Mapping[str, Sequence[int]] = "clip_vit_b",
        use_pooler_features: bool = False,
        num_queries: int = 32,
        hidden_size: int = 1024,
        dropout_p: float = 0.05,
        attention_dropout: float = 0.05,
        activation_fn: str = "gelu",
        input_gate_bias_prior: float = 0.0,
        forget_gate_bias_prior: float = 0.0,
        use_tanh: bool = False,
        **kwargs: Any,
    ) -> None:
        # Derived fields are recomputed (as the reference does); stored values are ignored.
        kwargs.pop("intermediate_size", None)
        kwargs.pop("num_attention_heads", None)
        super().__init__(**kwargs)
        self.text_config = _backbone_config(text_config, "text_config")
        self.vision_config = _backbone_config(vision_config, "vision_config")
        self.is_text_frozen = bool(is_text_frozen)
        self.is_vision_frozen = bool(is_vision_frozen)
        self.late_proj_output_size = late_proj_output_size
        self.layer_strategy = _normalise_strategy(layer_strategy)
        self.use_pooler_features = bool(use_pooler_features)
        self.num_queries = int(num_queries)
        self.hidden_size = int(hidden_size)
        self.dropout_p = float(dropout_p)
        self.attention_dropout = float(attention_dropout)
        self.activation_fn = activation_fn
        self.input_gate_bias_prior = float(input_gate_bias_prior)
        self.forget_gate_bias_prior = float(forget_gate_bias_prior)
        self.use_tanh = bool(use_tanh)
        if self.hidden_size <= 0 or self.hidden_size % 64:
            raise ConfigError(f"hidden_size must be a positive multiple of 64 (heads = d/64), got "
                              f"{self.hidden_size}")
        if self.num_queries <= 0:
            raise ConfigError(f"num_queries must be positive, got {self.num_queries}")
        if activation_fn not in _ACTIVATIONS:
            raise ConfigError(f"activation_fn must be one of {_ACTIVATIONS}, got {activation_fn!r}")
        self.intermediate_size = 4 * self.hidden_size
        self.num_attention_heads = self.hidden_size // 64

    # -- derived views ---------------------------------------------------------------------
    @property
    def text_layer_indices(self) -> tuple[int, ...]:
        if isinstance(self.layer_strategy, str):
            return LAYER_STRATEGIES[self.layer_strategy]["text"]
        return tuple(self.layer_strategy["text"])

    @property
    def vision_layer_indices(self) -> tuple[int, ...]:
        if isinstance(self.layer_strategy, str):
            return LAYER_STRATEGIES[self.layer_strategy]["vision"]
        return tuple(self.layer_strategy["vision"])

    @property
    def num_steps(self) -> int:
        return len(self.text_layer_indices)

    @property
    def output_dim(self) -> int:
        return int(self.late_proj_output_size) if self.late_proj_output_size else self.hidden_size

    def validate_backbones(self) -> None:
        """Check that both backbones exist and have the layers the strategy reads."""
        for name, cfg, indices in (("text", self.text_config, self.text_layer_indices),
                                   ("vision", self.vision_config, self.vision_layer_indices)):
            if cfg is None:
                raise ConfigError(f"ReT needs a {name}_config (both modalities are always encoded)")
            layers = getattr(cfg, "num_hidden_layers", None)
            if layers is not None and max(indices) >= layers:
                raise ConfigError(f"layer_strategy {self.layer_strategy!r} reads {name} layer "
                                  f"{max(indices)} but the {name} backbone has {layers} layers")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("text_config", "vision_config"):
            value = getattr(self, key, None)
            out[key] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        out["layer_strategy"] = copy.deepcopy(self.layer_strategy)
        out["intermediate_size"] = self.intermediate_size
        out["num_attention_heads"] = self.num_attention_heads
        return out


class ReTRetrieverConfig(PretrainedConfig):
    """Two ReT encoders (query and passage) plus how they share backbones and train."""

    model_type = "retriever"

    def __init__(
        self,
        query_config: Mapping[str, Any] | ReTConfig | None = None,
        passage_config: Mapping[str, Any] | ReTConfig | None = None,
        fg_loss: bool = True,
        simmetric_loss: bool = True,  # (sic) the released field name
        share_query_passage_models: bool = False,
        share_text_models: bool = True,
        share_vision_models: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.query_config = self._ret_config(query_config, "query_config")
        self.share_query_passage_models = bool(share_query_passage_models)
        if self.share_query_passage_models:
            self.passage_config = self.query_config
        else:
            self.passage_config = self._ret_config(passage_config, "passage_config")
        self.fg_loss = bool(fg_loss)
        self.simmetric_loss = bool(simmetric_loss)
        self.share_text_models = bool(share_text_models)
        self.share_vision_models = bool(share_vision_models)
        # As in the reference, a shared backbone is described by the query tower's config.
        if self.query_config is not None and self.passage_config is not None:
            if self.share_text_models:
                self.passage_config.text_config = self.query_config.text_config
            if self.share_vision_models:
                self.passage_config.vision_config = self.query_config.vision_config

    @staticmethod
    def _ret_config(value: Any, field: str) -> ReTConfig | None:
        if value is None or isinstance(value, ReTConfig):
            return value
        if isinstance(value, Mapping):
            value = dict(value)
            model_type = value.pop("model_type", "ret")
            if model_type != "ret":
                raise ConfigError(f"{field} has model_type {model_type!r}, expected 'ret'")
            return ReTConfig(**value)
        raise ConfigError(f"{field} must be a dict or a ReTConfig, got {type(value).__name__}")

    def validate(self) -> None:
        if self.query_config is None or self.passage_config is None:
            raise ConfigError("a retriever config needs both query_config and passage_config")
        self.query_config.validate_backbones()
        self.passage_config.validate_backbones()
        if self.query_config.output_dim != self.passage_config.output_dim:
            raise ConfigError("query and passage towers must project to the same size, got "
                              f"{self.query_config.output_dim} and "
                              f"{self.passage_config.output_dim}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["query_config"] = self.query_config.to_dict() if self.query_config else None
        out["passage_config"] = self.passage_config.to_dict() if self.passage_config else None
        out["architectures"] = ["RetrieverModel"]
        return out

"""What every model-backed reranker shares when loading: device / dtype and the load itself
(``retriever.hf_loading``, the generators' loader too) with an error that names the stage, and
cutting a passage to a token budget with the model's own tokenizer."""

from __future__ import annotations

from typing import Any

import torch

from ..hf_loading import device_and_dtype, load_model, truncate_tokens
from .base import RerankerLoadError
from .configuration_rerank import RerankerConfig

__all__ = ["load_kwargs", "load_reranker_model", "truncate_tokens"]


def load_kwargs(config: RerankerConfig) -> tuple[dict[str, Any], torch.device]:
    """from_pretrained keyword arguments and the device to put the model on."""
    device, dtype = device_and_dtype(config.device, config.dtype)
    return {"dtype": dtype}, device


def _hint(config: RerankerConfig, exc: Exception) -> str:
    return (f"check the hub id or folder, and that the model is a {config.kind} model the "
            "installed transformers supports")


def load_reranker_model(config: RerankerConfig, model_class: Any, processor: bool = False
                        ) -> tuple[RerankerConfig, Any, Any, torch.device]:
    """The config loaded with, the model on its device, its tokenizer (or processor) and the
    device; RerankerLoadError (at once when the hub is unreachable) naming the model."""
    kwargs, device = load_kwargs(config)   # settings first: cheapest, most specific
    config, model, preprocessor = load_model(config, model_class, role="reranker",
                                             error=RerankerLoadError, hint=_hint,
                                             model_kwargs=kwargs, processor=processor)
    return config, model.to(device), preprocessor, device

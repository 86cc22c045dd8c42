"""What every model-backed reranker shares when loading: device / dtype, hub fail-fast, an error
that names the stage, and cutting a passage to a token budget with the model's own tokenizer."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from retriever.hub import HubUnavailableError, hub_access
from retriever.runtime import resolve_device, resolve_dtype

from .base import RerankerLoadError
from .configuration_rerank import RerankerConfig

__all__ = ["load_error", "load_kwargs", "prepare_load", "truncate_tokens"]


def load_kwargs(config: RerankerConfig) -> tuple[dict[str, Any], torch.device]:
    """from_pretrained keyword arguments and the device to put the model on."""
    device = resolve_device(config.device)
    dtype = torch.bfloat16 if config.dtype is None and device.type == "cuda" else \
        resolve_dtype(config.dtype, device)
    return {"dtype": dtype, "revision": config.revision,
            "local_files_only": config.local_files_only,
            "trust_remote_code": config.trust_remote_code}, device


def prepare_load(config: RerankerConfig) -> RerankerConfig:
    """The config to load with (``local_files_only`` when the hub is down but the model is
    cached), or RerankerLoadError now rather than after minutes of retries."""
    try:
        local = hub_access(str(config.model), "reranker model",
                           filename=config.gguf_file or "config.json", revision=config.revision,
                           local_files_only=config.local_files_only)
    except HubUnavailableError as exc:
        raise RerankerLoadError(f"cannot load reranker model {config.model!r} ({config.kind}): "
                                f"{exc}") from exc
    return config if local == config.local_files_only else \
        dataclasses.replace(config, local_files_only=local)


def load_error(config: RerankerConfig, exc: Exception) -> RerankerLoadError:
    reason = str(exc).strip().rstrip(".")
    return RerankerLoadError(f"cannot load reranker model {config.model!r} ({config.kind}): "
                             f"{reason}. Hint: check the hub id or folder, and that the model "
                             f"is a {config.kind} model the installed transformers supports.")


def truncate_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """``text`` cut after ``max_tokens`` of the tokenizer's tokens (at a token boundary)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    if len(enc["input_ids"]) <= max_tokens:
        return text
    return text[:enc["offset_mapping"][max_tokens - 1][1]].rstrip()

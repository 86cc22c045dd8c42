"""Loading Hugging Face language models one way for every component that wraps one (the
generators, the rerankers): the hub checked first (a cached model loads offline, an unreachable
uncached one fails in seconds), the dtype a device gets by default, the model with its tokenizer
(GGUF files included) or processor (PIL backend), left-padded batches, and prompts through the
model's chat template. It lives in ``retriever`` because the rerankers may not import
``generator``; the generator imports it from here.

A loader's config is any dataclass with ``model``, ``kind``, ``revision``, ``local_files_only``,
``trust_remote_code`` and ``device`` / ``dtype`` (``gguf_file`` optional): GeneratorConfig and
RerankerConfig are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from .hub import HubUnavailableError, hub_access
from .runtime import resolve_device, resolve_dtype

__all__ = ["LOAD_ERRORS", "chat_prompt", "device_and_dtype", "left_padded", "load_model",
           "model_device", "truncate_tokens"]

C = TypeVar("C")

LOAD_ERRORS = (OSError, ValueError, KeyError)   # what from_pretrained raises for a bad model


def device_and_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None
                     ) -> tuple[torch.device, torch.dtype]:
    """The device, and the dtype on it: bfloat16 on CUDA unless set, else as ``resolve_dtype``."""
    resolved = resolve_device(device)
    if dtype is None and resolved.type == "cuda":
        return resolved, torch.bfloat16
    return resolved, resolve_dtype(dtype, resolved)


def _source_options(config: Any) -> dict[str, Any]:
    return {"revision": config.revision, "local_files_only": config.local_files_only,
            "trust_remote_code": config.trust_remote_code}


def _load_processor(name: str, options: dict[str, Any]) -> Any:
    from transformers import AutoProcessor

    try:  # transformers >= 5: the PIL image backend (no torchvision needed)
        return AutoProcessor.from_pretrained(name, backend="pil", **options)
    except TypeError:
        return AutoProcessor.from_pretrained(name, **options)


def load_model(config: C, model_class: Any, *, role: str, error: type[Exception],
               hint: Callable[[C, Exception], str], model_kwargs: dict[str, Any] | None = None,
               processor: bool = False) -> tuple[C, Any, Any]:
    """``config.model`` through ``model_class.from_pretrained`` with its tokenizer (or, with
    ``processor``, its processor): the config it loaded with (``local_files_only`` set when the
    hub is unreachable but the model is cached), the model (not moved) and the preprocessor.
    Every failure is ``error`` naming the ``role`` ("generator", "reranker") and the model, with
    ``hint(config, exc)`` saying what to do. ``model_kwargs``: dtype, device_map,
    quantization_config..."""
    gguf = getattr(config, "gguf_file", None)
    prefix = f"cannot load {role} model {config.model!r} ({config.kind})"
    try:
        local = hub_access(str(config.model), f"{role} model", filename=gguf or "config.json",
                           revision=config.revision, local_files_only=config.local_files_only)
    except HubUnavailableError as exc:
        raise error(f"{prefix}: {exc}") from exc
    if local != config.local_files_only:
        config = dataclasses.replace(config, local_files_only=local)  # type: ignore[type-var]
    options = _source_options(config)
    extra = {"gguf_file": gguf} if gguf and not processor else {}   # GGUF: text models only
    try:
        if processor:
            preprocessor = _load_processor(config.model, options)
        else:
            from transformers import AutoTokenizer

            preprocessor = AutoTokenizer.from_pretrained(config.model, **options, **extra)
        model = model_class.from_pretrained(config.model, **{**(model_kwargs or {}), **options},
                                            **extra)
    except LOAD_ERRORS as exc:
        reason = str(exc).strip().rstrip(".")
        raise error(f"{prefix}: {reason}. Hint: {hint(config, exc)}.") from exc
    return config, model, preprocessor


def left_padded(tokenizer: Any) -> Any:
    """``tokenizer`` padding on the left (a batch's last position is where the answer starts),
    with a pad token (its end-of-sequence token when it has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_device(model: Any, device: torch.device) -> torch.device:
    """Where a model's inputs go: ``device``, or where accelerate placed it (device_map,
    quantisation)."""
    return model.device if getattr(model, "hf_device_map", None) else device


def chat_prompt(owner: Any, body: str, system: str | None = None, image: bool | None = None
                ) -> str:
    """``body`` as the user's turn through ``owner``'s chat template, the generation prompt
    added. ``owner``: a tokenizer (string content), or a processor (``image`` True / False:
    typed parts, an image part first when True)."""
    if image is None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": body}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
    else:
        content: list[dict[str, Any]] = [{"type": "image"}] if image else []
        content.append({"type": "text", "text": body})
        messages = [{"role": "user", "content": content}]
        if system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    return owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def truncate_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """``text`` cut after ``max_tokens`` of the tokenizer's tokens (at a token boundary)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    if len(enc["input_ids"]) <= max_tokens:
        return text
    return text[:enc["offset_mapping"][max_tokens - 1][1]].rstrip()

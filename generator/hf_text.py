"""Text-only answering through ``AutoModelForCausalLM``: the model reads the passages and the
question, not the image (useful with small or quantised models, GGUF files included)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .base import QAItem
from .config import GeneratorConfig
from .hf_base import HFGenerator, PreparedItem, load_error, model_load_kwargs, prepare_hub_load
from .prompts import as_context_passages

__all__ = ["CausalLMGenerator"]


class CausalLMGenerator(HFGenerator):
    kind = "causal-lm"

    def __init__(self, config: GeneratorConfig, model: Any, tokenizer: Any,
                 device: torch.device) -> None:
        if config.prompt.chat_template:
            tokenizer.chat_template = config.prompt.chat_template
        # without a chat template (or with prompt.use_chat_template false: completion style,
        # which small models follow better with worked examples) the prompt is plain text and
        # the tokenizer adds BOS itself
        self._templated = bool(getattr(tokenizer, "chat_template", None)) and \
            config.prompt.use_chat_template
        super().__init__(config, model, tokenizer, device)

    @classmethod
    def load(cls, config: GeneratorConfig) -> "CausalLMGenerator":
        kwargs, device = model_load_kwargs(config)   # settings first: cheapest, most specific
        config = prepare_hub_load(config)
        kwargs["local_files_only"] = config.local_files_only
        extra = {"gguf_file": config.gguf_file} if config.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                config.model, revision=config.revision, local_files_only=config.local_files_only,
                trust_remote_code=config.trust_remote_code, **extra)
            model = AutoModelForCausalLM.from_pretrained(config.model, **kwargs, **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise load_error(config, exc) from exc
        if "device_map" not in kwargs:
            model = model.to(device)
        return cls(config, model, tokenizer, device)

    def render(self, body: str, has_image: bool) -> str:
        if not self._templated:  # completion style ends where the answer starts
            return body if not self.config.prompt.use_chat_template else body + "\n"
        messages = [{"role": "user", "content": body}]
        if self.config.prompt.system:
            messages.insert(0, {"role": "system", "content": self.config.prompt.system})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=not self._templated,
                                  verbose=False)["input_ids"])

    def _prepare(self, item: QAItem) -> PreparedItem:
        if not item.question or not item.question.strip():
            raise ValueError("the question is empty")
        prompt = self.builder.build(item.question, as_context_passages(item.passages),
                                    has_image=False)
        return PreparedItem(prompt, None)

    def _encode(self, items: Sequence[PreparedItem]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer([item.prompt.text for item in items], padding=True,
                                   return_tensors="pt", add_special_tokens=not self._templated))

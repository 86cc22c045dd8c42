"""Text-only answering through ``AutoModelForCausalLM``: the model reads the passages and the
question, not the image (useful with small or quantised models, GGUF files included)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from retriever.hf_loading import chat_prompt

from .base import QAItem
from .config import GeneratorConfig
from .hf_base import HFGenerator, PreparedItem
from .prompts import as_context_passages

__all__ = ["CausalLMGenerator"]


class CausalLMGenerator(HFGenerator):
    kind = "causal-lm"
    auto_model = AutoModelForCausalLM

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

    def render(self, body: str, has_image: bool) -> str:
        if not self._templated:  # completion style ends where the answer starts
            return body if not self.config.prompt.use_chat_template else body + "\n"
        return chat_prompt(self.tokenizer, body, self.config.prompt.system)

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

"""Image-text-to-text models through ``AutoModelForImageTextToText`` + ``AutoProcessor`` and the
processor's chat template: the LLaVA family (1.5, NeXT, OneVision) and other such models
(Qwen2-VL / Qwen2.5-VL, SmolVLM, Idefics3, InternVL in HF format)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from retriever.hf_loading import chat_prompt
from retriever.images import load_image

from .base import GeneratorLoadError, QAItem
from .config import GeneratorConfig
from .hf_base import HFGenerator, PreparedItem
from .prompts import as_context_passages

__all__ = ["ImageTextToTextGenerator"]


class ImageTextToTextGenerator(HFGenerator):
    kind = "image-text-to-text"
    auto_model = AutoModelForImageTextToText
    uses_processor = True

    def __init__(self, config: GeneratorConfig, model: Any, processor: Any,
                 device: torch.device) -> None:
        if config.prompt.chat_template:
            processor.chat_template = config.prompt.chat_template
        if not getattr(processor, "chat_template", None):
            raise GeneratorLoadError(f"{config.model} has no chat template; set "
                                     "generator.prompt.chat_template")
        super().__init__(config, model, processor.tokenizer, device, processor)
        self._image_tokens: dict[tuple[int, int], int] = {}

    def render(self, body: str, has_image: bool) -> str:
        return chat_prompt(self.processor, body, self.config.prompt.system, image=has_image)

    def image_tokens(self, image: Image.Image) -> int:
        """Tokens an image adds beyond its placeholder in the rendered prompt (per image size:
        fixed for LLaVA-1.5, size-dependent for NeXT / Qwen2-VL)."""
        key = image.size
        if key not in self._image_tokens:
            probe = self.render("x", has_image=True)
            ids = self.processor(text=[probe], images=[image], add_special_tokens=False,
                                 return_tensors="pt")["input_ids"][0]
            self._image_tokens[key] = int(len(ids)) - self.count_tokens(probe)
        return self._image_tokens[key]

    def _prepare(self, item: QAItem) -> PreparedItem:
        if not item.question or not item.question.strip():
            raise ValueError("the question is empty")
        image = None
        if item.image is not None:
            image = load_image(item.image)
        extra = self.image_tokens(image) if image is not None else 0
        prompt = self.builder.build(item.question, as_context_passages(item.passages),
                                    image is not None, extra)
        return PreparedItem(prompt, image)

    def _encode(self, items: Sequence[PreparedItem]) -> dict[str, torch.Tensor]:
        images = [item.image for item in items if item.image is not None]
        inputs = self.processor(text=[item.prompt.text for item in items],
                                images=images or None, padding=True, return_tensors="pt",
                                add_special_tokens=False)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return dict(inputs)

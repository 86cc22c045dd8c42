"""Image-text-to-text models through ``AutoModelForImageTextToText`` + ``AutoProcessor`` and the
processor's chat template: the LLaVA family (1.5, NeXT, OneVision) and other such models
(Qwen2-VL / Qwen2.5-VL, SmolVLM, Idefics3, InternVL in HF format)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from retriever.images import load_image

from .base import GeneratorLoadError, QAItem
from .config import GeneratorConfig
from .hf_base import HFGenerator, PreparedItem, load_error, model_load_kwargs, prepare_hub_load
from .prompts import as_context_passages

__all__ = ["ImageTextToTextGenerator"]


def _load_processor(source: str, config: GeneratorConfig) -> Any:
    kwargs = {"revision": config.revision, "local_files_only": config.local_files_only,
              "trust_remote_code": config.trust_remote_code}
    try:  # transformers >= 5: the PIL image backend (no torchvision needed)
        return AutoProcessor.from_pretrained(source, backend="pil", **kwargs)
    except TypeError:
        return AutoProcessor.from_pretrained(source, **kwargs)


class ImageTextToTextGenerator(HFGenerator):
    kind = "image-text-to-text"

    def __init__(self, config: GeneratorConfig, model: Any, processor: Any,
                 device: torch.device) -> None:
        if config.prompt.chat_template:
            processor.chat_template = config.prompt.chat_template
        if not getattr(processor, "chat_template", None):
            raise GeneratorLoadError(f"{config.model} has no chat template; set "
                                     "generator.prompt.chat_template")
        super().__init__(config, model, processor.tokenizer, device, processor)
        self._image_tokens: dict[tuple[int, int], int] = {}

    @classmethod
    def load(cls, config: GeneratorConfig) -> "ImageTextToTextGenerator":
        kwargs, device = model_load_kwargs(config)   # settings first: cheapest, most specific
        config = prepare_hub_load(config)
        kwargs["local_files_only"] = config.local_files_only
        try:
            processor = _load_processor(config.model, config)
            model = AutoModelForImageTextToText.from_pretrained(config.model, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise load_error(config, exc) from exc
        if "device_map" not in kwargs:
            model = model.to(device)
        return cls(config, model, processor, device)

    def render(self, body: str, has_image: bool) -> str:
        content: list[dict[str, Any]] = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": body})
        messages = [{"role": "user", "content": content}]
        if self.config.prompt.system:
            messages.insert(0, {"role": "system",
                                "content": [{"type": "text", "text": self.config.prompt.system}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

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

"""Generator implementations by ``kind``: configuration chooses, callers never branch on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Generator
from .config import GeneratorConfig
from .hf_multimodal import ImageTextToTextGenerator
from .hf_text import CausalLMGenerator
from .tiny import TINY_GENERATOR_NAME, tiny_generator

__all__ = ["GENERATORS", "build_generator"]

GENERATORS: dict[str, type[Generator]] = {
    ImageTextToTextGenerator.kind: ImageTextToTextGenerator,
    CausalLMGenerator.kind: CausalLMGenerator,
}


def build_generator(config: GeneratorConfig | Mapping[str, Any]) -> Generator:
    """Load the generator a configuration describes (a GeneratorConfig or a plain mapping).

    The model name ``rag-vqa/tiny-random-llava`` builds the untrained tiny model offline."""
    if not isinstance(config, GeneratorConfig):
        config = GeneratorConfig.from_dict(config)
    if config.model == TINY_GENERATOR_NAME:
        return tiny_generator(config)
    return GENERATORS[config.kind].load(config)

"""Generator implementations by ``kind``: configuration chooses, callers never branch on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Generator
from .config import GeneratorConfig
from .hf_multimodal import ImageTextToTextGenerator
from .hf_text import CausalLMGenerator

__all__ = ["GENERATORS", "build_generator"]

GENERATORS: dict[str, type[Generator]] = {
    ImageTextToTextGenerator.kind: ImageTextToTextGenerator,
    CausalLMGenerator.kind: CausalLMGenerator,
}


def build_generator(config: GeneratorConfig | Mapping[str, Any]) -> Generator:
    """Load the generator a configuration describes (a GeneratorConfig or a plain mapping)."""
    if not isinstance(config, GeneratorConfig):
        config = GeneratorConfig.from_dict(config)
    return GENERATORS[config.kind].load(config)

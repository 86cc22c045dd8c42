"""Tiny, randomly initialised answering models built from configs (a LLaVA with a Llama text side
and a CLIP vision side, and a Llama causal LM, from ``retriever.tiny``, which the rerankers share),
with a real byte-level BPE tokenizer and a chat template. For tests, benchmarks and offline smoke
runs: their answers are meaningless.
"""

from __future__ import annotations

from retriever.tiny import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    TINY_LLAVA_NAME,
    tiny_causal_lm,
    tiny_llava,
    tiny_tokenizer,
)

from .base import Generator
from .config import GeneratorConfig
from .hf_multimodal import ImageTextToTextGenerator
from .hf_text import CausalLMGenerator

__all__ = ["TINY_GENERATOR_NAME", "CHAT_TEMPLATE", "IMAGE_TOKEN", "tiny_tokenizer", "tiny_llava",
           "tiny_causal_lm", "tiny_generator", "build_tiny_generator"]

TINY_GENERATOR_NAME = TINY_LLAVA_NAME


def tiny_generator(config: GeneratorConfig, seed: int = 0, max_positions: int = 512
                   ) -> Generator:
    """The tiny random model of ``config.kind``, driven by every other option of ``config``."""
    if config.kind == "causal-lm":
        model, tokenizer = tiny_causal_lm(seed, max_positions)
        return CausalLMGenerator.from_components(config, model, tokenizer)
    model, processor = tiny_llava(seed, max_positions)
    return ImageTextToTextGenerator.from_components(config, model, processor)


def build_tiny_generator(kind: str = "image-text-to-text", seed: int = 0,
                         max_positions: int = 512, **options) -> Generator:
    """A ready Generator over a tiny random model; ``options`` are GeneratorConfig fields."""
    return tiny_generator(GeneratorConfig(model=TINY_GENERATOR_NAME, kind=kind, **options),
                          seed, max_positions)

"""What every answer says about the models that gave it, in one place (the CLI text, ``--json``
and the demo banner all show :func:`models_note`). It is derived from the models actually
loaded, not from profile names: an index may bring its own retriever, and a trained model must
never carry the untrained warning, nor an untrained one a trained-model claim."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from generator import GeneratorConfig
from generator.tiny import TINY_GENERATOR_NAME

if TYPE_CHECKING:  # loading imports this module for TINY_WARNING
    from .loading import LoadedRetriever

__all__ = ["TINY_NOTE", "TINY_RETRIEVER_NOTE", "TINY_GENERATOR_NOTE", "TINY_WARNING",
           "SAMPLE_RETRIEVER_NOTE", "NOT_RELEASED_NOTE", "models_note", "generator_display_name"]

TINY_NOTE = ("answered by UNTRAINED tiny models (offline smoke run): the answer and the "
             "evidence ranking are meaningless")
TINY_RETRIEVER_NOTE = "UNTRAINED tiny retriever: the evidence ranking is meaningless"
TINY_GENERATOR_NOTE = "UNTRAINED tiny generator: the answer is meaningless"
# what a loaded tiny retriever says on its own (retriever demo, index build, training)
TINY_WARNING = ("the tiny retriever is UNTRAINED (random weights): its rankings and scores are "
                "meaningless and only show that the machinery works")
SAMPLE_RETRIEVER_NOTE = "ReT trained on the 30-flag sample"
NOT_RELEASED_NOTE = "not the released ReT"
_QUANT_SUFFIX = re.compile(r"[.-](?:I?Q\d\w*|F16|F32|BF16)$", re.IGNORECASE)


def generator_display_name(config: GeneratorConfig) -> str:
    """A short model name: "SmolLM2-135M" for SmolLM2-135M-Instruct.Q4_1.gguf."""
    name = Path(config.gguf_file).stem if config.gguf_file else \
        config.model.rstrip("/").rsplit("/", 1)[-1]
    return _QUANT_SUFFIX.sub("", name).removesuffix("-Instruct")


def models_note(retriever: LoadedRetriever, generator: GeneratorConfig) -> str:
    """'' for released or user models answering from images; otherwise what answered."""
    tiny_generator = generator.model == TINY_GENERATOR_NAME
    if retriever.kind == "tiny" and tiny_generator:
        return TINY_NOTE
    parts = []
    if retriever.kind == "tiny":
        parts.append(TINY_RETRIEVER_NOTE)
    elif retriever.kind == "sample":
        parts.append(SAMPLE_RETRIEVER_NOTE)
    if tiny_generator:
        parts.append(TINY_GENERATOR_NOTE)
    elif generator.kind == "causal-lm":
        parts.append(f"{generator_display_name(generator)} (text only)")
    if retriever.kind == "sample":
        parts.append(NOT_RELEASED_NOTE)
    return "; ".join(parts)

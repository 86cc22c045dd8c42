"""Answer generation: multimodal LLMs (or text-only LMs) conditioned on retrieved passages.

    from generator import GeneratorConfig, build_generator
    gen = build_generator(GeneratorConfig(model="llava-hf/llava-1.5-7b-hf"))
    out = gen.answer("When was this building completed?", "photo.jpg", passages)
    out.answer, out.raw, out.prompt
"""

from .base import AnswerStream, GeneratedAnswer, Generator, GeneratorLoadError, QAItem
from .config import KINDS, GeneratorConfig
from .postprocess import clean_answer
from .prompts import ContextPassage, PromptConfig, PromptTooLongError
from .registry import GENERATORS, build_generator

__all__ = [
    "AnswerStream", "ContextPassage", "GENERATORS", "GeneratedAnswer", "Generator",
    "GeneratorConfig", "GeneratorLoadError", "KINDS", "PromptConfig", "PromptTooLongError",
    "QAItem", "build_generator", "clean_answer",
]

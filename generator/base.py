"""The answering interface: (question, image, retrieved passages) -> a short answer with its raw
text, the exact prompt and what went into it. Implementations are chosen by configuration
(registry.py); callers only see :class:`Generator`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from retriever.errors import UserError

from .config import GeneratorConfig

__all__ = ["Generator", "GeneratedAnswer", "QAItem", "AnswerStream", "GeneratorLoadError"]


class GeneratorLoadError(UserError, RuntimeError):
    """An answering model (or its processor) that cannot be loaded."""


@dataclass
class QAItem:
    question: str
    image: Any = None                 # PIL image, path, bytes or None
    passages: Sequence[Any] = ()      # ranked; ContextPassage, KB passages, dicts or strings


@dataclass
class GeneratedAnswer:
    answer: str                       # the short, cleaned answer ("" when the item failed)
    raw: str                          # what the model generated
    prompt: str                       # the exact prompt text given to the model
    passage_ids: list[Any] = field(default_factory=list)   # passages in the prompt, rank order
    truncated_passages: int = 0
    dropped_passages: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class AnswerStream:
    """Iterate to receive the answer's text as it is generated; ``result`` holds the complete
    :class:`GeneratedAnswer` once the iteration ends. ``passage_ids`` (the passages the prompt
    holds, rank order) is known at once: the prompt is built before generation starts."""

    def __init__(self, pieces: Iterator[str], finish: Any,
                 passage_ids: Sequence[Any] = ()) -> None:
        self._pieces = pieces
        self._finish = finish
        self.passage_ids = list(passage_ids)
        self._chunks: list[str] = []
        self.result: GeneratedAnswer | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self._chunks.append(piece)
            yield piece
        self.result = self._finish("".join(self._chunks))

    def text(self) -> str:
        """Consume the stream and return the whole raw text."""
        for _ in self:
            pass
        return self.result.raw if self.result else ""


class Generator(ABC):
    """Answers questions about images from retrieved passages."""

    kind: str = ""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()  # one generation at a time per model

    @classmethod
    @abstractmethod
    def load(cls, config: GeneratorConfig) -> Generator:
        """Load the model and its processor as configured."""

    @abstractmethod
    def answer_batch(self, items: Sequence[QAItem], batch_size: int | None = None,
                     max_new_tokens: int | None = None) -> list[GeneratedAnswer]:
        """Answers in input order; an item that fails is returned with ``error`` set while the
        rest of the batch goes on. ``max_new_tokens`` may lower the configured limit."""

    @abstractmethod
    def stream(self, question: str, image: Any = None, passages: Sequence[Any] = (),
               max_new_tokens: int | None = None) -> AnswerStream:
        """The answer as it is generated (for the demo)."""

    def answer(self, question: str, image: Any = None, passages: Sequence[Any] = (),
               max_new_tokens: int | None = None) -> GeneratedAnswer:
        return self.answer_batch([QAItem(question, image, passages)], batch_size=1,
                                 max_new_tokens=max_new_tokens)[0]

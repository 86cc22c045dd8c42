"""The reranking interface: ``rerank(question, image, candidates) -> list[Reranked]``, best
first. Stages compose (:class:`RerankPipeline`): each reorders (and may cut) what the one before
it kept; every result remembers the first-stage score and rank and each stage's own."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UserError
from .candidates import Reranked, StageScore, as_reranked
from .configuration_rerank import RerankerConfig

__all__ = [
    "ModelReranker",
    "RelevanceScore",
    "RerankPipeline",
    "Reranker",
    "RerankerLoadError",
    "passage_text",
]

logger = logging.getLogger(__name__)


class RerankerLoadError(UserError, RuntimeError):
    """A reranking model (or its tokenizer / processor) that cannot be loaded."""


@dataclass(frozen=True)
class RelevanceScore:
    score: float                        # higher is more relevant
    probability: float | None = None    # P(relevant), where the model gives one


class Reranker(ABC):
    """One reranking stage."""

    def __init__(self, config: RerankerConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @abstractmethod
    def rerank(self, question: str, image: Any, candidates: Sequence[Any]) -> list[Reranked]:
        """``candidates``: first-stage results (see as_candidates) or an earlier stage's
        output; the result is best first and at most ``config.top`` long."""

    def _ordered(self, items: list[Reranked], scores: Sequence[RelevanceScore],
                 keep: int | None) -> list[Reranked]:
        """Best score first; ties keep the earlier order (the previous stage's ranking)."""
        order = sorted(range(len(items)), key=lambda i: (-scores[i].score, i))
        if keep is not None:
            order = order[:keep]
        return [replace(items[i], stages=items[i].stages + (
            StageScore(self.name, float(scores[i].score), rank, scores[i].probability),))
            for rank, i in enumerate(order, start=1)]


class ModelReranker(Reranker):
    """A stage that scores each (question, image, passage) on its own, in batches."""

    @abstractmethod
    def score(self, question: str, image: Any, items: Sequence[Reranked]
              ) -> list[RelevanceScore]:
        """One RelevanceScore per item, in order (batched by ``config.batch_size``)."""

    def rerank(self, question: str, image: Any, candidates: Sequence[Any]) -> list[Reranked]:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question to rerank for is empty")
        items = as_reranked(candidates)
        if not items:
            return []
        start = time.perf_counter()
        scores = self.score(question.strip(), image, items)
        logger.debug("%s scored %d candidates in %.3fs", self.name, len(items),
                     time.perf_counter() - start)
        return self._ordered(items, scores, self.config.top)

def passage_text(title: str | None, text: str | None) -> str:
    """A passage as rerankers read it: "Title: text" unless the text already opens with it."""
    text = " ".join((text or "").split())
    title = " ".join((title or "").split())
    if title and not text.casefold().startswith(title.casefold()):
        return f"{title}: {text}"
    return text


class RerankPipeline:
    """Stages run in order (e.g. article, then mllm); with no stages, the first stage's order."""

    def __init__(self, stages: Sequence[Reranker]) -> None:
        self.stages = list(stages)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def rerank(self, question: str, image: Any, candidates: Sequence[Any],
               top: int | None = None) -> list[Reranked]:
        """The final ranking, cut to ``top`` when given."""
        items = as_reranked(candidates)
        for stage in self.stages:
            items = stage.rerank(question, image, items)
        return items[:top] if top is not None else items

    def __len__(self) -> int:
        return len(self.stages)

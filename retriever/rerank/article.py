"""Entity, then section (EchoSight's idea without its trained reranker): the article whose
passages score best is the likely entity; its sections are the ones worth reading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .base import Reranker
from .candidates import Reranked, StageScore, as_reranked
from .configuration_rerank import RerankerConfig

__all__ = ["ArticleReranker"]


class ArticleReranker(Reranker):
    """Groups candidates by ``article_id`` (a passage without one is its own article), scores
    each article by the best (``aggregate = "max"``) or summed (``"sum"``) latest score of its
    passages, keeps the best ``articles`` articles and lists their passages article by article,
    best passage first. A passage's stage score is its article's score."""

    kind = "article"

    def __init__(self, config: RerankerConfig) -> None:
        if config.kind != "article":
            raise ValueError(f"ArticleReranker needs kind 'article', got {config.kind!r}")
        super().__init__(config)

    @classmethod
    def from_config(cls, config: RerankerConfig) -> ArticleReranker:
        return cls(config)

    def rerank(self, question: str, image: Any, candidates: Sequence[Any]) -> list[Reranked]:
        items = as_reranked(candidates)
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            key = item.candidate.article_id
            groups.setdefault(f"a:{key}" if key is not None else f"p:{item.passage_id}",
                              []).append(i)
        reduce = max if self.config.aggregate == "max" else sum
        article_score = {key: float(reduce(items[i].score for i in members))
                         for key, members in groups.items()}
        # best article first; ties: the article whose best passage came first
        best = sorted(groups, key=lambda key: (-article_score[key], groups[key][0]))
        order = [(key, i) for key in best[:self.config.articles]
                 for i in sorted(groups[key], key=lambda i: (-items[i].score, i))]
        if self.config.top is not None:
            order = order[:self.config.top]
        return [replace(items[i], stages=items[i].stages + (
            StageScore(self.name, article_score[key], rank),))
            for rank, (key, i) in enumerate(order, start=1)]

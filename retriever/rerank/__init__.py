"""Reranking between the index and the generator: retrieve many candidates, score them again
with a stronger (slower) model or by article, and hand the best few on.

    from retriever.rerank import RerankerConfig, build_pipeline
    stages = build_pipeline([{"kind": "article", "articles": 3},
                             {"kind": "cross-encoder", "model": "BAAI/bge-reranker-base",
                              "top": 5}])
    best = stages.rerank(question, image, evidence)      # list[Reranked], best first
    best[0].passage_id, best[0].first_stage_rank, best[0].rank, best[0].probability
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .article import ArticleReranker
from .base import ModelReranker, RelevanceScore, Reranker, RerankerLoadError, RerankPipeline
from .candidates import Candidate, Reranked, StageScore, as_candidates, as_reranked
from .configuration_rerank import DEFAULT_RELEVANCE_PROMPT, KINDS, RerankerConfig

__all__ = [
    "DEFAULT_RELEVANCE_PROMPT",
    "KINDS",
    "ArticleReranker",
    "Candidate",
    "ModelReranker",
    "RelevanceScore",
    "RerankPipeline",
    "Reranked",
    "Reranker",
    "RerankerConfig",
    "RerankerLoadError",
    "StageScore",
    "as_candidates",
    "as_reranked",
    "build_pipeline",
    "build_reranker",
]


def _registry() -> dict[str, type]:
    # model modules import transformers: only when a model stage is built
    from .modeling_cross_encoder import CrossEncoderReranker
    from .modeling_yesno import CausalLMReranker, MLLMReranker

    return {"article": ArticleReranker, "mllm": MLLMReranker, "causal-lm": CausalLMReranker,
            "cross-encoder": CrossEncoderReranker}


def build_reranker(config: RerankerConfig | Mapping[str, Any]) -> Reranker:
    """The stage ``config`` describes, its model loaded."""
    if not isinstance(config, RerankerConfig):
        config = RerankerConfig.from_dict(config)
    return _registry()[config.kind].from_config(config)


def build_pipeline(stages: Sequence[RerankerConfig | Mapping[str, Any] | Reranker]
                   ) -> RerankPipeline:
    """Stages in order; already built rerankers are used as they are."""
    return RerankPipeline([s if isinstance(s, Reranker) else build_reranker(s) for s in stages])

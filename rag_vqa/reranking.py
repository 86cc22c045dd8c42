"""The pipeline's reranking and answer-policy settings (the ``[reranker]`` and ``[answer]``
tables) and the step between retrieval and generation that uses them:

    [reranker]
    k_retrieve = 50                  # candidates the index returns; the best ``k`` go on
    [[reranker.stages]]              # run in order; each may cut with ``top``
    kind = "article"
    articles = 3
    [[reranker.stages]]
    kind = "mllm"
    model = "HuggingFaceTB/SmolVLM-256M-Instruct"

    [answer]
    cite = true                      # ask the generator for [1], [2] citations
    calibration = "runs/val/calibration.json"    # from `rag-vqa eval calibrate`
    abstain_below = 0.4              # answer abstain_text under this confidence
    abstain_text = "I don't know"

``--rerank MODEL --rerank-kind KIND --rerank-top N`` make a one-stage table from the command
line (``stage_from_flags``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from retriever.rerank import Reranked, RerankerConfig, RerankPipeline, build_pipeline

from .confidence import Calibration, confidence, confidence_features

__all__ = [
    "DEFAULT_ABSTAIN_TEXT",
    "AnswerSettings",
    "RerankSettings",
    "Reranking",
    "stage_from_flags",
]

DEFAULT_ABSTAIN_TEXT = "I don't know"


@dataclass
class RerankSettings:
    stages: list[dict[str, Any]] = field(default_factory=list)
    k_retrieve: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.k_retrieve, int) or isinstance(self.k_retrieve, bool) or \
                self.k_retrieve < 1:
            raise ValueError(f"reranker.k_retrieve must be a positive integer, got "
                             f"{self.k_retrieve!r}")
        if not isinstance(self.stages, list):
            raise ValueError("reranker.stages must be a list of tables ([[reranker.stages]])")
        for i, stage in enumerate(self.stages):
            try:
                RerankerConfig.from_dict(stage)
            except ValueError as exc:
                raise ValueError(f"reranker.stages[{i}]: {exc}") from exc

    @property
    def enabled(self) -> bool:
        return bool(self.stages)

    def configs(self) -> list[RerankerConfig]:
        return [RerankerConfig.from_dict(s) for s in self.stages]


@dataclass
class AnswerSettings:
    cite: bool = False
    calibration: str | None = None
    abstain_below: float | None = None
    abstain_text: str = DEFAULT_ABSTAIN_TEXT

    def __post_init__(self) -> None:
        if self.abstain_below is not None and (
                not isinstance(self.abstain_below, (int, float)) or
                isinstance(self.abstain_below, bool) or not 0 <= self.abstain_below <= 1):
            raise ValueError(f"answer.abstain_below must be a number in [0, 1], got "
                             f"{self.abstain_below!r}")
        if not isinstance(self.abstain_text, str) or not self.abstain_text.strip():
            raise ValueError("answer.abstain_text must be a non-empty text")


def stage_from_flags(model: str | None, kind: str | None, top: int | None
                     ) -> dict[str, Any] | None:
    """The stage ``--rerank MODEL --rerank-kind KIND --rerank-top N`` describe (None when no
    reranking flag is given); ``--rerank-kind article`` needs no model."""
    if model is None and kind is None:
        if top is not None:
            raise ValueError("--rerank-top needs --rerank MODEL or --rerank-kind article")
        return None
    kind = kind or "cross-encoder"
    stage: dict[str, Any] = {"kind": kind}
    if model is not None:
        stage["model"] = model
    if top is not None:
        stage["top"] = top
    RerankerConfig.from_dict(stage)   # bad combinations fail at parse time
    return stage


class Reranking:
    """Reranks evidence lists and rates them; models load on first use."""

    def __init__(self, settings: RerankSettings, answer: AnswerSettings | None = None,
                 pipeline: RerankPipeline | None = None) -> None:
        self.settings = settings
        self.answer = answer or AnswerSettings()
        self._pipeline = pipeline
        self._calibration: Calibration | None = None

    @property
    def pipeline(self) -> RerankPipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.settings.configs())
        return self._pipeline

    @property
    def calibration(self) -> Calibration | None:
        if self._calibration is None and self.answer.calibration:
            self._calibration = Calibration.load(self.answer.calibration)
        return self._calibration

    def retrieve_depth(self, k: int) -> int:
        """How many candidates to ask the index for."""
        return max(k, self.settings.k_retrieve) if self.settings.enabled else k

    def rerank(self, question: str, image: Any, evidence: Sequence[Any], k: int
               ) -> tuple[list[Any], list[Reranked]]:
        """(the best ``k`` evidence items in the new order, with rank and score replaced and
        the first-stage ones kept, and every reranked candidate). Evidence items are
        dataclasses with ``rank``, ``score``, ``passage_id`` (pipeline Evidence)."""
        if not self.settings.enabled:
            return list(evidence)[:k], []
        ranked = self.pipeline.rerank(question, image, evidence)
        by_id = {e.passage_id: e for e in evidence}
        out = []
        for r in ranked[:k]:
            item = by_id[r.passage_id]
            changes = {"rank": r.rank, "score": round(r.score, 4)}
            for name, value in (("first_stage_score", r.first_stage_score),
                                ("first_stage_rank", r.first_stage_rank),
                                ("rerank_probability", r.probability)):
                if any(f.name == name for f in dataclasses.fields(item)):
                    changes[name] = value
            out.append(dataclasses.replace(item, **changes))
        return out, ranked

    def confidence(self, ranked: Sequence[Any]) -> float:
        """The answer's confidence from its final ranking (see rag_vqa.confidence)."""
        return confidence(confidence_features(ranked), self.calibration)

    def abstains(self, value: float) -> bool:
        threshold = self.answer.abstain_below
        return threshold is not None and value < threshold

    @staticmethod
    def from_mapping(reranker: Mapping[str, Any] | None, answer: Mapping[str, Any] | None
                     ) -> Reranking:
        return Reranking(RerankSettings(**dict(reranker or {})),
                         AnswerSettings(**dict(answer or {})))

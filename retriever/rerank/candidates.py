"""The values reranking stages pass along: a first-stage candidate and its reranked form, which
keeps the first-stage score and rank next to every later stage's score and rank."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Candidate", "Reranked", "StageScore", "as_candidates", "as_reranked"]


@dataclass(frozen=True)
class Candidate:
    """One passage as the first stage (the index) returned it."""

    passage_id: str
    text: str
    score: float                 # first-stage score (ReT MaxSim)
    rank: int                    # first-stage rank, 1-based
    title: str | None = None
    section: str | None = None
    article_id: str | None = None


@dataclass(frozen=True)
class StageScore:
    """What one reranking stage said about a candidate."""

    stage: str                   # RerankerConfig.name
    score: float                 # the stage's own score (higher is better)
    rank: int                    # rank after the stage, 1-based
    probability: float | None = None   # P(relevant) where the stage gives one


@dataclass(frozen=True)
class Reranked:
    """A candidate after one or more stages; ``stages`` in the order they ran."""

    candidate: Candidate
    stages: tuple[StageScore, ...] = ()

    @property
    def passage_id(self) -> str:
        return self.candidate.passage_id

    @property
    def first_stage_score(self) -> float:
        return self.candidate.score

    @property
    def first_stage_rank(self) -> int:
        return self.candidate.rank

    @property
    def score(self) -> float:
        """The latest score (the first stage's before any reranking)."""
        return self.stages[-1].score if self.stages else self.candidate.score

    @property
    def rank(self) -> int:
        return self.stages[-1].rank if self.stages else self.candidate.rank

    @property
    def probability(self) -> float | None:
        """The latest stage's probability that gave one (model stages after an article
        stage keep theirs)."""
        return next((s.probability for s in reversed(self.stages) if s.probability is not None),
                    None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (eval runs store one per candidate)."""
        return {"passage_id": self.passage_id, "first_stage_score": self.first_stage_score,
                "first_stage_rank": self.first_stage_rank, "score": self.score,
                "rank": self.rank, "probability": self.probability,
                "stages": [{"stage": s.stage, "score": s.score, "rank": s.rank,
                            "probability": s.probability} for s in self.stages]}


def _get(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def as_candidates(items: Sequence[Any]) -> list[Candidate]:
    """Candidates from first-stage results: Candidate, pipeline Evidence, KB passages with a
    score, or dicts with passage_id / text / score (rank defaults to the list order)."""
    out = []
    for position, item in enumerate(items, start=1):
        if isinstance(item, Candidate):
            out.append(item)
            continue
        if isinstance(item, Reranked):
            out.append(item.candidate)
            continue
        passage_id = _get(item, "passage_id")
        if passage_id is None:
            raise ValueError(f"candidate {position} has no passage_id")
        score = _get(item, "score", 0.0)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise ValueError(f"candidate {passage_id!r} has a score that is not a number: "
                             f"{score!r}")
        out.append(Candidate(str(passage_id), _get(item, "text") or "", float(score),
                             int(_get(item, "rank") or position), _get(item, "title"),
                             _get(item, "section"), _get(item, "article_id")))
    return out


def as_reranked(items: Sequence[Any]) -> list[Reranked]:
    """What a stage takes: earlier stages' output as it is, anything else as candidates."""
    if all(isinstance(item, Reranked) for item in items):
        return list(items)
    return [Reranked(c) for c in as_candidates(items)]

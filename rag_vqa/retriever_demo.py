"""End-to-end retriever demo on the bundled sample (30 countries, their flags and passages):
encode the passages (text + image) with ReT_D, encode image+question queries with ReT_Q, rank by
MaxSim, and time every stage."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from retriever import DEFAULT_QUERY_INSTRUCTION, maxsim
from retriever.images import ImageInput

from .loading import LoadedRetriever
from .samples import SamplePassage, question_image, sample_passages, sample_questions

__all__ = ["RankedDocument", "QueryRanking", "DemoReport", "SampleSearcher", "run_retriever_demo"]


@dataclass
class RankedDocument:
    doc_id: str
    title: str
    score: float


@dataclass
class QueryRanking:
    label: str
    question: str
    expected_id: str
    ranking: list[RankedDocument]

    @property
    def hit_at_1(self) -> bool:
        return bool(self.ranking) and self.ranking[0].doc_id == self.expected_id


@dataclass
class DemoReport:
    retriever: str
    is_tiny: bool
    note: str
    num_documents: int
    feature_shape: list[int]
    seconds: dict[str, float] = field(default_factory=dict)
    queries: list[QueryRanking] = field(default_factory=list)

    @property
    def accuracy_at_1(self) -> float:
        return sum(q.hit_at_1 for q in self.queries) / max(1, len(self.queries))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["accuracy_at_1"] = self.accuracy_at_1
        return out


class SampleSearcher:
    """The built-in sample, encoded once, searchable with image+question queries."""

    def __init__(self, loaded: LoadedRetriever, batch_size: int = 8) -> None:
        self.loaded = loaded
        self.batch_size = batch_size
        self.documents: list[SamplePassage] = sample_passages()
        start = time.perf_counter()
        self.features = loaded.model.encode_documents(
            [d.text for d in self.documents], [d.image for d in self.documents],
            batch_size=batch_size)
        self.encode_seconds = time.perf_counter() - start

    def encode(self, questions: list[str], images: list[ImageInput]) -> torch.Tensor:
        return self.loaded.model.encode_queries(questions, images, batch_size=self.batch_size,
                                                instruction=DEFAULT_QUERY_INSTRUCTION)

    def rank(self, query_features: torch.Tensor, k: int) -> list[list[RankedDocument]]:
        scores = maxsim(query_features, self.features)
        top = scores.topk(min(k, len(self.documents)), dim=1)
        return [[RankedDocument(self.documents[j].passage_id, self.documents[j].title, float(s))
                 for s, j in zip(values.tolist(), indices.tolist())]
                for values, indices in zip(top.values, top.indices)]


def run_retriever_demo(loaded: LoadedRetriever, k: int = 3, batch_size: int = 8) -> DemoReport:
    searcher = SampleSearcher(loaded, batch_size)
    queries = sample_questions()
    t0 = time.perf_counter()
    query_feats = searcher.encode([q.question for q in queries],
                                  [question_image(q) for q in queries])
    t1 = time.perf_counter()
    rankings = searcher.rank(query_feats, k)
    t2 = time.perf_counter()
    report = DemoReport(loaded.name, loaded.is_tiny, loaded.note, len(searcher.documents),
                        list(searcher.features.shape[1:]),
                        {"encode_documents": searcher.encode_seconds, "encode_queries": t1 - t0,
                         "search": t2 - t1})
    for query, ranking in zip(queries, rankings):
        report.queries.append(QueryRanking(f"photo of the {query.country.title()} flag",
                                           query.question, query.passage_id[0], ranking))
    return report

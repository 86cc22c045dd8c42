"""``RagVQA``: retriever + index + knowledge base + generator behind one object.

    from rag_vqa import RagVQA
    pipe = RagVQA.from_pretrained(retriever="aimagelab/ReT-CLIP-ViT-L-14",
                                  generator="llava-hf/llava-1.5-7b-hf", index="index/")
    answer = pipe.answer("photo.jpg", "When was this building completed?", k=5)
    answer.answer, answer.evidence[0].title, answer.timings

Models load lazily, once, and are shared by every call (and by the demo's users).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator import AnswerStream, GeneratedAnswer, QAItem
from generator.postprocess import first_line
from retriever.errors import UserInputError
from retriever.images import ImageInput, load_image
from retriever.index import Hit
from retriever.processing_ret import query_text

from .citations import parse_citations
from .components import Components
from .config import RagConfig, load_config
from .kb.errors import UnsafeImagePath
from .notes import TINY_NOTE, models_note
from .reranking import AnswerSettings, Reranking

__all__ = ["RagVQA", "Answer", "Evidence", "StreamingAnswer", "TINY_NOTE"]

logger = logging.getLogger(__name__)


@dataclass
class Evidence:
    """One retrieved passage, as shown to the user and given to the generator."""

    rank: int
    passage_id: str
    score: float
    text: str
    title: str | None = None
    section: str | None = None
    article_id: str | None = None
    url: str | None = None
    image: str | None = None            # the KB's image reference
    image_path: str | None = None       # the resolved file, when it exists
    # after reranking (issue 15): ``rank`` and ``score`` are the reranker's, these the index's
    first_stage_score: float | None = None
    first_stage_rank: int | None = None
    rerank_probability: float | None = None


@dataclass
class Answer:
    question: str
    answer: str
    raw: str
    prompt: str
    evidence: list[Evidence]
    used_passages: list[str] = field(default_factory=list)   # evidence the prompt could hold
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    note: str = ""
    error: str | None = None
    # issue 15: passages cited ([1], [2] of the prompt), confidence (rag_vqa.confidence),
    # abstention under answer.abstain_below, and every reranked candidate (both stages' ranks)
    citations: list[str] = field(default_factory=list)
    confidence: float | None = None
    abstained: bool = False
    candidates: list[dict[str, Any]] = field(default_factory=list)
    first_stage: list[dict[str, Any]] = field(default_factory=list)   # the index's ranking

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamingAnswer(AnswerStream):
    """The generator's stream (same shape: iterate for the text, ``passage_ids`` at once,
    ``result`` when done) with the evidence shown at once; ``result`` is the :class:`Answer`."""

    def __init__(self, evidence: list[Evidence], pieces: Iterator[str],
                 finish: Callable[[str], Answer], passage_ids: Sequence[str] = ()) -> None:
        super().__init__(pieces, finish, passage_ids)
        self.evidence = evidence

    @property
    def used_passages(self) -> list[str]:
        """The Answer's name for ``passage_ids``: the evidence the prompt holds."""
        return self.passage_ids


class RagVQA:
    def __init__(self, config: RagConfig, **preloaded: Any) -> None:
        """``preloaded``: components already in memory (retriever=LoadedRetriever,
        generator=Generator, index=MultiVectorIndex, store=PassageStore,
        reranker=RerankPipeline) to share."""
        self.config = config
        reranker = preloaded.pop("reranker", None)  # issue 15: a built RerankPipeline
        self.components = Components(config, **preloaded)
        self.components.check_names()
        self.reranking = Reranking(config.reranker, config.answer, reranker)

    @classmethod
    def from_config(cls, source: str | os.PathLike | Mapping[str, Any] | None = None,
                    **overrides: Any) -> RagVQA:
        return cls(load_config(source, **overrides))

    @classmethod
    def from_pretrained(cls, retriever: str | None = None, generator: str | None = None,
                        index: str | os.PathLike | None = None, *, kb: str | None = None,
                        profile: str = "default", **options: Any) -> RagVQA:
        """Build from model ids and an index folder; ``options`` are top-level config fields
        (``k``) or sections (``generator={"max_new_tokens": 16}``)."""
        overrides: dict[str, Any] = {"profile": profile, **options}
        if retriever:
            overrides.setdefault("retriever", {})["model"] = retriever
        if generator:
            overrides.setdefault("generator", {})["model"] = generator
        if index is not None:
            overrides.setdefault("index", {})["path"] = str(index)
        if kb is not None:
            overrides.setdefault("index", {})["kb"] = str(kb)
        return cls(load_config(None, **overrides))

    def check(self) -> RagVQA:
        """Load everything now and verify the index matches the retriever (fail fast)."""
        self.components.load_all()
        return self

    def identity(self, generation: bool = True) -> dict[str, Any]:
        """Everything that can change an answer (or, with ``generation`` False, a ranking): the
        settings, the retriever's weights, the index and knowledge base by digest, the generator.
        Two pipelines with equal identities give the same outputs; a resumed evaluation run
        compares it with the one it started with. Devices and batch sizes are left out: they
        change speed, not results."""
        config = self.config.to_dict()
        for section in ("retriever", "generator"):
            for key in ("device", "batch_size", "device_map", "local_files_only"):
                config[section].pop(key, None)
        config["index"].pop("verify", None)
        loaded = self.components.retriever
        index, store = self.components.index, self.components.store
        out: dict[str, Any] = {
            "k": config["k"], "retriever": {**config["retriever"], **loaded.identity()},
            "index": {"path": str(Path(index.path).resolve()), "digest": index.digest,
                      "search": config["index"]["search"]},
            "kb": {"path": str(Path(store.folder).resolve()), "digest": store.digest,
                   "images": str(store.image_root) if store.image_root else None},
        }
        if config["reranker"]["stages"]:  # only when set: older runs keep their identity
            out["reranker"] = config["reranker"]
        if generation:
            out["generator"] = config["generator"]
            if not config["generator"]["prompt"]["cite"]:  # older runs keep their identity
                for key in ("cite", "cite_instruction"):
                    config["generator"]["prompt"].pop(key)
            if config["answer"] != asdict(AnswerSettings()):
                out["answer"] = config["answer"]
        return out

    # -- retrieval ----------------------------------------------------------------------------
    def evidence_for(self, hits: Sequence[Hit]) -> list[Evidence]:
        """Evidence for a ranking (index hits, best first): passages read from the knowledge
        base, images resolved. Also for rankings made elsewhere (``eval run --rankings``);
        KeyError names a passage the KB does not hold."""
        store = self.components.store
        passages = store.get_many([h.doc_id for h in hits])
        out = []
        for rank, (hit, p) in enumerate(zip(hits, passages), start=1):
            try:
                path = store.resolve_image(p)
            except UnsafeImagePath as exc:  # e.g. a link out of the image root: no image shown
                logger.warning("passage %s: %s", p.passage_id, exc)
                path = None
            out.append(Evidence(rank=rank, passage_id=p.passage_id, score=round(hit.score, 4),
                                text=p.text, title=p.title, section=p.section,
                                article_id=p.article_id, url=p.url, image=p.image,
                                image_path=str(path) if path else None))
        return out

    def _retrieve_many(self, images: Sequence[Any], questions: Sequence[str], k: int,
                       instructions: Sequence[str | None] | None = None
                       ) -> tuple[list[list[Evidence]], dict[str, float]]:
        index = self.components.index  # first: a missing index fails before any model loads
        retriever = self.components.retriever.model
        default = self.config.retriever.instruction
        instructions = instructions or [None] * len(questions)
        texts = [query_text(ins or default, q) for ins, q in zip(instructions, questions)]
        t0 = time.perf_counter()
        features = retriever.encode_queries(texts, list(images),
                                            batch_size=self.config.retriever.batch_size)
        t1 = time.perf_counter()
        hits = index.search(features, k=k, **self.config.index.search)
        t2 = time.perf_counter()
        evidence = [self.evidence_for(h) for h in hits]
        t3 = time.perf_counter()
        n = max(1, len(questions))
        return evidence, {"encode_query": (t1 - t0) / n, "search": (t2 - t1) / n,
                          "fetch": (t3 - t2) / n}

    @staticmethod
    def _image(image: ImageInput):
        if image is None:
            return None
        return load_image(image, label=None if isinstance(image, (str, os.PathLike)) else
                          "the uploaded image")

    def retrieve(self, image: ImageInput, question: str, k: int | None = None
                 ) -> list[Evidence]:
        """The top-k passages for an image and a question (no generation)."""
        return self.retrieve_batch([(image, question)], k)[0]

    def retrieve_batch(self, items: Sequence[tuple[ImageInput, str]], k: int | None = None,
                       instructions: Sequence[str | None] | None = None
                       ) -> list[list[Evidence]]:
        """Evidence for many (image, question) pairs; ``instructions`` replace the configured
        query instruction per item (ReT-M2KR data carries one per example)."""
        return [ev for ev, _ in self.retrieve_stages(items, k, instructions)]

    def retrieve_stages(self, items: Sequence[tuple[ImageInput, str]], k: int | None = None,
                        instructions: Sequence[str | None] | None = None
                        ) -> list[tuple[list[Evidence], dict[str, Any]]]:
        """:meth:`retrieve_batch` with what the reranking stage saw, per item: ``candidates``
        (every reranked candidate) and ``first_stage`` (the index's ranking), both empty when no
        reranker is configured (``eval run --retrieval-only`` records them)."""
        instructions = list(instructions) if instructions else [None] * len(items)
        questions = [_question(q, allow_empty=bool(ins)) for (_, q), ins in zip(items,
                                                                               instructions)]
        images = [self._image(image) for image, _ in items]
        evidence, timings = self._retrieve_many(images, questions,
                                                self.reranking.retrieve_depth(k or self.config.k),
                                                instructions)
        return list(zip(*self._rerank_many(questions, images, evidence, k or self.config.k,
                                           timings)))

    def _rerank_many(self, questions: Sequence[str], images: Sequence[Any],
                     evidence: list[list[Evidence]], k: int, timings: dict[str, float]
                     ) -> tuple[list[list[Evidence]], list[dict[str, Any]]]:
        """The reranking stage (issue 15; nothing when no stage is configured): the best ``k``
        evidence per question and, per question, ``candidates`` (the reranked records) and
        ``first_stage`` (the index's ranking); ``timings["rerank"]`` per question."""
        t0 = time.perf_counter()
        shown, candidates = [], []
        for question, image, ev in zip(questions, images, evidence):
            best, ranked = self.reranking.rerank(question, image, ev, k)
            shown.append(best)
            candidates.append({"candidates": [r.to_dict() for r in ranked],
                               "first_stage": [{"passage_id": e.passage_id, "score": e.score}
                                               for e in ev] if ranked else []})
        if self.reranking.settings.enabled:
            timings["rerank"] = (time.perf_counter() - t0) / max(1, len(questions))
        return shown, candidates

    def _abstains(self, evidence: Sequence[Evidence]) -> bool:
        """Whether the answer from this evidence abstains: its confidence is known before
        generation (it comes from retrieval and reranking alone)."""
        return self.reranking.abstains(self.reranking.confidence(evidence))

    def _abstention(self) -> GeneratedAnswer:
        """The generator's place in an answer that abstains: nothing was generated."""
        return GeneratedAnswer(answer=self.config.answer.abstain_text, raw="", prompt="")

    def _judged(self, answer: Answer) -> Answer:
        """Citations, confidence and abstention (issue 15) on a generated answer."""
        if answer.error is not None:
            return answer
        if self.config.answer.cite:
            answer.citations = parse_citations(first_line(answer.raw),
                                               answer.used_passages).passage_ids
            answer.answer = parse_citations(answer.answer, answer.used_passages).answer
        answer.confidence = self.reranking.confidence(answer.evidence)
        if self.reranking.abstains(answer.confidence):
            answer.abstained = True
            answer.answer = self.config.answer.abstain_text
        return answer

    # -- answering -----------------------------------------------------------------------------
    @property
    def note(self) -> str:
        """What every answer must say about the models that gave it (from the models loaded,
        not the names configured: an index may bring its own retriever); see rag_vqa.notes."""
        return models_note(self.components.retriever, self.config.generator)

    def _models(self) -> dict[str, str]:
        return {"retriever": self.components.retriever.name,
                "generator": self.config.generator.model}

    def answer(self, image: ImageInput, question: str, k: int | None = None,
               max_new_tokens: int | None = None) -> Answer:
        """One answer; an image or question that cannot be used raises ValueError (in a batch
        it marks only its own Answer)."""
        item = (self._image(image), _question(question))
        return self.answer_batch([item], k=k, max_new_tokens=max_new_tokens)[0]

    def answer_batch(self, items: Sequence[tuple[ImageInput, str]], batch_size: int | None = None,
                     k: int | None = None, max_new_tokens: int | None = None,
                     instructions: Sequence[str | None] | None = None) -> list[Answer]:
        """Answers in input order for (image, question) pairs, retrieval batched. An item whose
        image or question cannot be used gets an Answer with ``error`` set; the others are
        answered as if it were not there."""
        start = time.perf_counter()
        instructions = list(instructions) if instructions else [None] * len(items)
        ready: list[tuple[int, Any, str]] = []
        failed: dict[int, tuple[str, str]] = {}
        for i, (image, question) in enumerate(items):
            try:
                ready.append((i, self._image(image), _question(question)))
            except ValueError as exc:
                shown = question if isinstance(question, str) else repr(question)[:200]
                failed[i] = (shown, str(exc))
        evidence, timings = self._retrieve_many(
            [image for _, image, _ in ready], [q for _, _, q in ready],
            self.reranking.retrieve_depth(k or self.config.k),
            [instructions[i] for i, _, _ in ready]) if ready else ([], {})
        evidence, candidates = self._rerank_many(
            [q for _, _, q in ready], [image for _, image, _ in ready], evidence,
            k or self.config.k, timings)
        t0 = time.perf_counter()
        asked = [j for j, ev in enumerate(evidence) if not self._abstains(ev)]
        outputs = [self._abstention()] * len(ready)
        if asked:  # an answer that abstains is not generated (as when streaming)
            generated = self.components.generator.answer_batch(
                [QAItem(ready[j][2], ready[j][1], evidence[j]) for j in asked],
                batch_size=batch_size, max_new_tokens=max_new_tokens)
            for j, out in zip(asked, generated, strict=True):
                outputs[j] = out
        generate = (time.perf_counter() - t0) / max(1, len(ready))
        total = (time.perf_counter() - start) / max(1, len(items))
        note, models = self.note, self._models()
        answers: list[Answer | None] = [None] * len(items)
        for (i, _, q), ev, cands, out in zip(ready, evidence, candidates, outputs):
            answers[i] = self._judged(_answer(
                q, models, note, out, ev, {**timings, "generate": generate, "total": total},
                cands))
        for i, (question, error) in failed.items():
            answers[i] = _answer(question, models, note, error=error)
        return answers  # type: ignore[return-value]

    def stream(self, image: ImageInput, question: str, k: int | None = None,
               max_new_tokens: int | None = None) -> StreamingAnswer:
        """Retrieval first (``evidence`` is ready at once), then the answer as it is written."""
        start = time.perf_counter()
        image, question = self._image(image), _question(question)
        evidence, timings = self._retrieve_many(
            [image], [question], self.reranking.retrieve_depth(k or self.config.k))
        evidence, candidates = self._rerank_many([question], [image], evidence,
                                                 k or self.config.k, timings)
        t0 = time.perf_counter()
        if self._abstains(evidence[0]):  # decided before any token: the model is not run
            text = self.config.answer.abstain_text
            stream = AnswerStream(iter([text]), lambda _: self._abstention())
        else:
            stream = self.components.generator.stream(question, image, evidence[0],
                                                      max_new_tokens=max_new_tokens)

        def finish(_: str) -> Answer:
            out = stream.result
            now = time.perf_counter()
            return self._judged(_answer(
                question, self._models(), self.note, out, evidence[0],
                {**timings, "generate": now - t0, "total": now - start}, candidates[0]))

        return StreamingAnswer(evidence[0], iter(stream), finish, stream.passage_ids)

    @property
    def image_roots(self) -> list[Path]:
        """Folders the evidence images come from (the demo may serve files from these only)."""
        root = self.components.store.image_root
        return [root] if root else []


def _answer(question: str, models: dict[str, str], note: str, out: GeneratedAnswer | None = None,
            evidence: list[Evidence] | None = None, timings: dict[str, float] | None = None,
            candidates: Mapping[str, Any] | None = None, error: str | None = None) -> Answer:
    """The one place an Answer is made: from the generator's output, or (``out`` None) for an
    item that could not be answered (``error``)."""
    if out is None:
        return Answer(question=question, answer="", raw="", prompt="", evidence=[],
                      models=models, note=note, error=error)
    return Answer(question=question, answer=out.answer, raw=out.raw, prompt=out.prompt,
                  evidence=evidence or [], used_passages=list(out.passage_ids),
                  timings=timings or {}, models=models, note=note, error=out.error,
                  **(candidates or {}))


def _question(question: str | None, allow_empty: bool = False) -> str:
    """The stripped question; empty only where an instruction alone makes the query (retrieval
    of image-only ReT-M2KR queries)."""
    if question is None and allow_empty:
        return ""
    if not isinstance(question, str):
        raise UserInputError(f"the question must be text, got {type(question).__name__}")
    if not question.strip() and not allow_empty:
        raise UserInputError("the question is empty")
    return question.strip()

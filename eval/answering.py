"""Answering one batch of an evaluation run (``eval run``, locally or on a Ray worker): every
question gets a record, a question that fails fails alone, and each record carries its own
timings - the batch's wall time as ``latency`` and the image's load time - so that the report's
p50 / p95 are over questions, not over batch averages."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rag_vqa import RagVQA
from rag_vqa.kb.errors import UnsafeImagePath
from retriever import ImageLoadError
from retriever.images import load_image

from .datasets import EvalQuestion, ImageLocator

if TYPE_CHECKING:
    from .runner import RunSpec

__all__ = ["process_batch"]

logger = logging.getLogger(__name__)


def _failed(question: EvalQuestion, reason: str) -> dict[str, Any]:
    return {"data_id": question.data_id, "prediction": "", "status": "failed", "error": reason,
            "retrieved": [], "timings": {}}


def _record(question: EvalQuestion, answer, evidence,
            stages: dict[str, Any] | None = None) -> dict[str, Any]:
    """``answer`` None: a retrieval-only record, ``stages`` what its reranker saw."""
    retrieved = [{"passage_id": e.passage_id, "score": e.score} for e in evidence]
    if answer is None:
        return {"data_id": question.data_id, "prediction": None, "status": "ok", "error": None,
                "retrieved": retrieved, "timings": {}, **_stage_fields(stages or {})}
    return {"data_id": question.data_id, "prediction": answer.answer, "raw": answer.raw,
            "prompt": answer.prompt, "retrieved": retrieved,
            "used_passages": answer.used_passages, "timings": answer.timings,
            "status": "ok" if answer.error is None else "failed", "error": answer.error,
            **_rerank_fields(answer)}


def _rerank_fields(answer) -> dict[str, Any]:
    """Issue 15: the index's ranking and the reranked candidates (when a reranker ran), the
    answer's confidence, citations and abstention."""
    out: dict[str, Any] = {"confidence": answer.confidence,
                           **_stage_fields({"first_stage": answer.first_stage,
                                            "candidates": answer.candidates})}
    if answer.citations:
        out["citations"] = answer.citations
    if answer.abstained:
        out["abstained"] = True
    return out


def _stage_fields(stages: dict[str, Any]) -> dict[str, Any]:
    """The index's ranking and the reranked candidates, when a reranker ran (without one the
    index's ranking is ``retrieved`` itself)."""
    if not stages.get("candidates"):
        return {}
    return {"first_stage": stages["first_stage"], "reranked": stages["candidates"]}


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


def _image(question: EvalQuestion, locator: ImageLocator) -> Any:
    """The question's image (None without one); ImageLoadError etc. for a failed question."""
    path = locator.find(question.image)
    if question.image and path is None:
        raise ImageLoadError(repr(question.image), f"not found under {locator.root}")
    return load_image(path) if path else None


def _answer(pipeline: RagVQA, spec: RunSpec, ready: list[tuple[EvalQuestion, Any]]
            ) -> list[dict[str, Any]]:
    """Records of one batch, each with the batch's wall time as its ``latency`` (the time the
    question waited for its answer: per question with --batch-size 1)."""
    start = time.perf_counter()
    if spec.rankings:
        from .rankings import answer_from_rankings

        records = answer_from_rankings(pipeline, spec, ready)
    else:
        records = _answer_here(pipeline, spec, ready)
    latency = time.perf_counter() - start
    for record in records:  # the batch size says what the latency measured
        record["timings"] = {**record.get("timings", {}), "latency": latency,
                             "batch_size": len(ready)}
    return records


def _answer_here(pipeline: RagVQA, spec: RunSpec, ready: list[tuple[EvalQuestion, Any]]
                 ) -> list[dict[str, Any]]:
    items = [(image, q.question) for q, image in ready]
    instructions = [q.instruction for q, _ in ready]
    if spec.retrieval_only:
        staged = pipeline.retrieve_stages(items, spec.k, instructions)
        return [_record(q, None, ev, stages) for (q, _), (ev, stages) in zip(ready, staged)]
    answers = pipeline.answer_batch(items, batch_size=spec.batch_size, k=spec.k,
                                    instructions=instructions)
    return [_record(q, answer, answer.evidence) for (q, _), answer in zip(ready, answers)]


def _isolated(pipeline: RagVQA, spec: RunSpec, ready: list[tuple[EvalQuestion, Any]]
              ) -> list[dict[str, Any]]:
    """Answers for ``ready``; when the batch raises, each question alone, so that one bad
    question fails by itself and its neighbours are still answered."""
    try:
        return _answer(pipeline, spec, ready)
    except Exception as exc:  # noqa: BLE001 - isolation per question is the point
        if len(ready) == 1:
            logger.warning("question %s failed: %s", ready[0][0].data_id, _describe(exc))
            return [_failed(ready[0][0], _describe(exc))]
        logger.info("a batch of %d questions raised (%s); answering them one by one",
                    len(ready), _describe(exc))
        return [record for item in ready for record in _isolated(pipeline, spec, [item])]


def process_batch(pipeline: RagVQA, spec: RunSpec, batch: list[EvalQuestion],
             locator: ImageLocator) -> list[dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    ready, loaded = [], {}
    for q in batch:
        if q.error is not None:
            records[q.data_id] = _failed(q, q.error)
            continue
        try:
            start = time.perf_counter()
            ready.append((q, _image(q, locator)))
            loaded[q.data_id] = time.perf_counter() - start
        except (ImageLoadError, UnsafeImagePath, OSError) as exc:
            records[q.data_id] = _failed(q, str(exc))
    if ready:
        for record in _isolated(pipeline, spec, ready):
            record["timings"]["load_image"] = loaded.get(record["data_id"], 0.0)
            records[record["data_id"]] = record
    return [records.get(q.data_id) or _failed(q, "the pipeline returned no result")
            for q in batch]

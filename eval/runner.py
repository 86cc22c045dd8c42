"""``rag-vqa eval run``: the whole pipeline over a dataset, resumable.

Each finished question is appended to ``OUT/predictions.jsonl`` (flushed and fsynced per batch);
a restarted run reads the file back (repairing a half-written last line), skips what is done and
never writes a question twice. A question whose image is missing or broken is recorded as failed
with the reason, and the run goes on. ``OUT/run.json`` records what the run is, so a restart with
other inputs is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rag_vqa import RagVQA
from rag_vqa.kb.errors import UnsafeImagePath
from retriever import ImageLoadError
from retriever.images import load_image

from .datasets import EvalQuestion, ImageLocator, load_questions

__all__ = ["RunSpec", "RunSummary", "run_eval", "read_predictions", "select_questions",
           "RunMismatchError", "PREDICTIONS", "RUN_FILE", "file_sha256"]

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"


class RunMismatchError(ValueError):
    """The output folder holds a run of something else."""


@dataclass
class RunSpec:
    dataset: str
    questions: str
    images: str
    out: str
    index: str | None = None
    config: str | None = None
    retrieval_only: bool = False
    limit: int | None = None
    shard: tuple[int, int] = (0, 1)
    k: int | None = None
    batch_size: int = 8
    qtypes: str | None = None
    withkb: str | None = None
    image_map: str | None = None

    def identity(self) -> dict[str, Any]:
        """What must match for a restart to continue this run."""
        return {"dataset": self.dataset, "questions": str(Path(self.questions).resolve()),
                "questions_sha256": file_sha256(self.questions),
                "retrieval_only": self.retrieval_only, "shard": list(self.shard), "k": self.k}


@dataclass
class RunSummary:
    selected: int
    already_done: int
    answered: int
    failed: int
    seconds: float
    out: str


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_predictions(path: Path, repair: bool = True) -> list[dict[str, Any]]:
    """Records of a predictions file. A torn last line (killed mid-write) is ignored and, with
    ``repair`` (the runner, before it appends), cut off the file; readers of a run that may
    still be writing (reports) pass ``repair=False``."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        if repair:
            logger.warning("%s: dropping a half-written last line", path)
            with open(path, "r+b") as handle:
                handle.truncate(keep)
        data = data[:keep]
    records = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RunMismatchError(f"{path}:{number} is not valid JSON: {exc.msg}") from exc
    return records


def select_questions(questions: list[EvalQuestion], spec: RunSpec) -> list[EvalQuestion]:
    index, count = spec.shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard must be i/n with 0 <= i < n, got {index}/{count}")
    chosen = [q for i, q in enumerate(questions) if i % count == index]
    return chosen[: spec.limit] if spec.limit is not None else chosen


def _prepare_out(spec: RunSpec, pipeline: RagVQA) -> Path:
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    identity = spec.identity()
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("identity") != identity:
            changed = sorted(k for k in identity if saved.get("identity", {}).get(k) !=
                             identity[k])
            raise RunMismatchError(f"{out} holds a run with other inputs (differs in: "
                                   f"{', '.join(changed)}); use another --out")
        # a restart may change what does not alter finished records (--limit, batch size):
        # the report must select what this run now covers
        record = {**saved, "spec": asdict(spec)}
    else:
        record = {"identity": identity, "spec": asdict(spec),
                  "config": pipeline.config.to_dict(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return out


def _failed(question: EvalQuestion, reason: str) -> dict[str, Any]:
    return {"data_id": question.data_id, "prediction": "", "status": "failed", "error": reason,
            "retrieved": [], "timings": {}}


def _record(question: EvalQuestion, answer, evidence) -> dict[str, Any]:
    retrieved = [{"passage_id": e.passage_id, "score": e.score} for e in evidence]
    if answer is None:
        return {"data_id": question.data_id, "prediction": None, "status": "ok", "error": None,
                "retrieved": retrieved, "timings": {}}
    return {"data_id": question.data_id, "prediction": answer.answer, "raw": answer.raw,
            "prompt": answer.prompt, "retrieved": retrieved,
            "used_passages": answer.used_passages, "timings": answer.timings,
            "status": "ok" if answer.error is None else "failed", "error": answer.error}


def _process(pipeline: RagVQA, spec: RunSpec, batch: list[EvalQuestion],
             locator: ImageLocator) -> list[dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    ready = []
    for q in batch:
        try:
            path = locator.find(q.image)
            if q.image and path is None:
                records[q.data_id] = _failed(q, f"image {q.image!r} not found under "
                                                f"{locator.root}")
                continue
            ready.append((q, load_image(path) if path else None))
        except (ImageLoadError, UnsafeImagePath) as exc:
            records[q.data_id] = _failed(q, str(exc))
    if ready:
        items = [(image, q.question) for q, image in ready]
        instructions = [q.instruction for q, _ in ready]
        if spec.retrieval_only:
            evidence = pipeline.retrieve_batch(items, spec.k, instructions)
            for (q, _), ev in zip(ready, evidence):
                records[q.data_id] = _record(q, None, ev)
        else:
            answers = pipeline.answer_batch(items, batch_size=spec.batch_size, k=spec.k,
                                            instructions=instructions)
            for (q, _), answer in zip(ready, answers):
                records[q.data_id] = _record(q, answer, answer.evidence)
    return [records[q.data_id] for q in batch]


def run_eval(spec: RunSpec, pipeline: RagVQA | None = None,
             show_progress: bool | None = None) -> RunSummary:
    """Answer (or only retrieve for) every selected question, appending as it goes."""
    questions = select_questions(load_questions(spec.dataset, spec.questions,
                                                qtypes=spec.qtypes, withkb=spec.withkb), spec)
    locator = ImageLocator(spec.dataset, spec.images, spec.image_map)
    if pipeline is None:
        overrides = {"index": {"path": spec.index}} if spec.index else {}
        pipeline = RagVQA.from_config(spec.config, **overrides)
    pipeline.check()
    out = _prepare_out(spec, pipeline)
    predictions = out / PREDICTIONS
    done = {r["data_id"] for r in read_predictions(predictions)}
    todo = [q for q in questions if q.data_id not in done]
    start = time.perf_counter()
    answered = failed = 0
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), unit="question",
               desc="evaluating", disable=not (len(todo) > 20 if show_progress is None
                                               else show_progress))
    with bar, open(predictions, "a", encoding="utf-8") as handle:
        for begin in range(0, len(todo), spec.batch_size):
            batch = todo[begin:begin + spec.batch_size]
            for record in _process(pipeline, spec, batch, locator):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                failed += record["status"] == "failed"
                answered += record["status"] == "ok"
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    return RunSummary(len(questions), len(questions) - len(todo), answered, failed,
                      round(time.perf_counter() - start, 3), str(out))

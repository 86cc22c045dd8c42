"""``rag-vqa eval run``: the whole pipeline over a dataset, resumable.

Every input is checked before the first question (each question record, the question-type and
entity files, the image root and map, the reference data the report scores against). Finished
questions are appended to ``OUT/predictions.jsonl`` (fsynced per batch); a restart repairs a
half-written last line, skips what is done and never writes a question twice. ``OUT/run.json``
records the run's identity - questions, images, and everything of the pipeline that can change
an answer - so a restart with other inputs is refused, naming what differs. A question that
cannot be answered (image missing or unreadable, a field of the wrong type, an error while
answering it) is recorded as failed with the reason, never costing its batch; ``retry_failed``
runs the failed ones again.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rag_vqa import RagVQA
from rag_vqa.ray_runtime import RayOptions
from retriever.errors import UserError, UserInputError
from retriever.fileio import (
    DIGEST,
    JSONRecordError,
    atomic_write_bytes,
    atomic_write_json,
    file_digest,
    loads_record,
    path_kind,
)

from .answering import process_batch as _process
from .datasets import DATASETS, DatasetError, EvalQuestion, ImageLocator, read_questions

__all__ = ["RunSpec", "RunSummary", "run_eval", "read_predictions", "latest_records",
           "select_questions", "check_inputs", "failure_kind", "RunMismatchError",
           "PREDICTIONS", "RUN_FILE", "IDENTITY_VERSION"]

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"
IDENTITY_VERSION = 2  # 1: dataset, questions, retrieval_only, shard, k only


class RunMismatchError(UserError, ValueError):
    """The output folder holds a run of something else (or a damaged one)."""


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
    retry_failed: bool = False
    skip_bad: bool = False
    verify: str | None = None                # index/KB check at load (config's default: full)
    allow_retriever_mismatch: bool = False
    rankings: str | None = None              # foreign rankings used instead of our retrieval

    def check(self) -> None:
        """Values and paths a caller may get wrong, refused before anything is read. The CLI's
        argument types catch the values first; library callers get the same rules."""
        if self.dataset not in DATASETS:
            raise DatasetError(f"unknown dataset {self.dataset!r}; use one of "
                               f"{', '.join(DATASETS)}")
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise UserInputError(f"--shard must be i/n with 0 <= i < n, got {index}/{count}")
        for name, low in (("limit", 0), ("k", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if (value is not None or name == "batch_size") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise UserInputError(f"--{name.replace('_', '-')} must be a whole number >= {low}, "
                                     f"got {value!r}")
        wanted = {"questions": ("file", "question file"), "qtypes": ("file", "--qtypes file"),
                  "withkb": ("file", "--withkb file"), "image_map": ("file", "--image-map file"),
                  "config": ("file", "--config file"), "index": ("a folder", "--index folder"),
                  "rankings": ("file", "--rankings file"),
                  "images": ("a folder", "image folder")}
        for name, (kind, what) in wanted.items():
            path = getattr(self, name)
            if path is not None:
                _require(path, kind, what)
        _require(self.out, "a folder", "--out folder", missing_ok=True)

    def identity(self, pipeline: RagVQA) -> dict[str, Any]:
        """Everything a finished record depends on; a restart must match it. What only selects
        or speeds up (limit, batch size, the report's qtypes / withkb files) is left out."""
        image_map = None if not self.image_map else {
            "path": str(Path(self.image_map).resolve()),
            "digest": f"{DIGEST}:{file_digest(self.image_map)}"}
        identity = {
            "version": IDENTITY_VERSION, "dataset": self.dataset,
            "questions": {"path": str(Path(self.questions).resolve()),
                          "digest": f"{DIGEST}:{file_digest(self.questions)}"},
            "images": str(Path(self.images).resolve()), "image_map": image_map,
            "retrieval_only": self.retrieval_only, "shard": list(self.shard),
            "k": self.k or pipeline.config.k,
            "pipeline": pipeline.identity(generation=not self.retrieval_only)}
        if self.rankings:  # only then: runs without one keep the identity they had
            identity["rankings"] = {"path": str(Path(self.rankings).resolve()),
                                    "digest": f"{DIGEST}:{file_digest(self.rankings)}"}
        return json.loads(json.dumps(identity, default=str))  # as it reads back from run.json


@dataclass
class RunSummary:
    selected: int
    already_done: int
    answered: int                  # answered by this run
    failed: int                    # failed in this run
    seconds: float
    out: str
    retried: int = 0               # failed records removed to be run again (retry_failed)
    skipped_records: int = 0       # unusable question records left out (skip_bad)
    failed_total: int = 0          # selected questions whose record says failed, after the run
    failure_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every selected question has a successful record."""
        return self.failed_total == 0


def _require(path: str, kind: str, what: str, missing_ok: bool = False) -> None:
    """``path`` is ``kind`` ('file' or 'a folder'), else a DatasetError saying what it is."""
    found = path_kind(path)
    if found == "missing":
        if missing_ok:
            return
        raise DatasetError(f"{what} {path} does not exist")
    if found != kind:
        article = {"file": "a file"}
        raise DatasetError(f"{what} {path} is {article.get(found, found)}, not "
                           f"{article.get(kind, kind)}")


# -- the predictions file ------------------------------------------------------------------------

def _read_lines(path: Path, repair: bool) -> list[tuple[bytes, dict[str, Any]]]:
    """(raw line, record) of a predictions file. A torn last line (killed mid-write) is ignored
    and, with ``repair``, cut off the file. Lines are split at b"\\n" only: a U+2028 inside a
    prompt is text, not a line break."""
    kind = path_kind(path)
    if kind == "missing":
        return []
    if kind != "file":
        raise RunMismatchError(f"{path} is {kind}, not a predictions file")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        if repair:
            logger.warning("%s: dropping a half-written last line", path)
            with open(path, "r+b") as handle:
                handle.truncate(keep)
        data = data[:keep]
    out = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = loads_record(line)
        except JSONRecordError as exc:
            raise RunMismatchError(f"{path}:{number} is damaged ({exc}); delete "
                                   f"{path.parent} to start the run over") from None
        if not isinstance(record, dict) or not isinstance(record.get("data_id"), str):
            raise RunMismatchError(f"{path}:{number} is not a prediction record of rag-vqa")
        out.append((line, record))
    return out


def read_predictions(path: Path, repair: bool = True) -> list[dict[str, Any]]:
    """Records of a predictions file in file order. Readers of a run that may still be writing
    (reports) pass ``repair=False``."""
    return [record for _, record in _read_lines(Path(path), repair)]


def latest_records(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per question: the last one written."""
    return {r["data_id"]: r for r in records}


def _drop_records(path: Path, data_ids: set[str]) -> None:
    """Rewrite the predictions without the records of ``data_ids``, atomically: a kill leaves
    the old file or the new one, and a dropped question is simply not done yet."""
    kept = [line + b"\n" for line, record in _read_lines(path, repair=True)
            if record["data_id"] not in data_ids]
    atomic_write_bytes(path, b"".join(kept))


def _encode(record: dict[str, Any]) -> bytes:
    # a string that is not valid Unicode (an exception message quoting an undecodable file
    # name) must not stop the run: it is written with U+FFFD in its place
    return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8",
                                                                              "replace")


# -- inputs ------------------------------------------------------------------------------------

def select_questions(questions: list[EvalQuestion], spec: RunSpec) -> list[EvalQuestion]:
    index, count = spec.shard
    if count < 1 or not 0 <= index < count:
        raise UserInputError(f"--shard must be i/n with 0 <= i < n, got {index}/{count}")
    chosen = [q for i, q in enumerate(questions) if i % count == index]
    return chosen[: spec.limit] if spec.limit is not None else chosen


def _check_references(spec: RunSpec) -> None:
    """Load the reference data the report will score with, through the scorers' own loaders,
    so that a problem there stops the run before it starts, not after it."""
    from .metrics import load_evqa_references, load_infoseek_references

    if spec.retrieval_only or spec.dataset in ("ret-jsonl", "m2kr") or \
            (spec.dataset == "infoseek" and not spec.qtypes):
        return
    try:
        if spec.dataset == "infoseek":
            load_infoseek_references(spec.questions, spec.qtypes)
        else:
            load_evqa_references(spec.questions)
    except (ValueError, OSError, csv.Error) as exc:  # decoding errors are ValueErrors
        hint = " (or pass --retrieval-only)" if spec.dataset == "evqa" else \
            " (or leave out --qtypes to skip scoring answers)"
        raise DatasetError(f"the report could not score against {spec.questions}: {exc}. Fix "
                           f"the file{hint}") from exc


def check_inputs(spec: RunSpec) -> tuple[list[EvalQuestion], int, ImageLocator]:
    """Every input checked: the selected questions, how many records were skipped, and the
    image locator. Raises DatasetError / ValueError before anything is loaded or written."""
    spec.check()
    found = read_questions(spec.dataset, spec.questions, qtypes=spec.qtypes, withkb=spec.withkb,
                           skip_bad=spec.skip_bad)
    locator = ImageLocator(spec.dataset, spec.images, spec.image_map)
    _check_references(spec)
    if spec.rankings:
        from .rankings import load_rankings

        load_rankings(spec.rankings)  # a bad file is refused now, not per batch
    return select_questions(found.questions, spec), found.skipped, locator


# -- the run folder ----------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else f"{text[:28]}...{text[-28:]}"


def _differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """'key.path: was X, now Y' for each differing item; a part only one side has is one line."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now)):
            name = f"{prefix}.{key}" if prefix else key
            if key not in saved or key not in now:
                out.append(f"{name}: was {_short(saved[key]) if key in saved else '(none)'}, "
                           f"now {_short(now[key]) if key in now else '(none)'}")
            else:
                out.extend(_differences(saved[key], now[key], name))
        return out
    return [] if saved == now else [f"{prefix}: was {_short(saved)}, now {_short(now)}"]


def _prepare_out(spec: RunSpec, pipeline: RagVQA, identity: dict[str, Any]) -> Path:
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    what_to_do = f"Use another --out, or delete {out} to start over."
    if path_kind(path) != "missing":
        try:
            saved = loads_record(path.read_bytes())
            saved_identity = saved["identity"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunMismatchError(f"{path} is unreadable ({exc}). {what_to_do}") from None
        if not isinstance(saved_identity, dict) or \
                saved_identity.get("version") != IDENTITY_VERSION:
            raise RunMismatchError(f"{out} holds a run started by another version of rag-vqa, "
                                   f"whose inputs cannot be compared. {what_to_do}")
        differences = _differences(saved_identity, identity)
        if differences:
            listed = "\n  ".join(differences[:12])
            more = f"\n  ... and {len(differences) - 12} more" if len(differences) > 12 else ""
            raise RunMismatchError(f"{out} holds a run of other inputs; continuing it would mix "
                                   f"predictions of both. What differs:\n  {listed}{more}\n"
                                   f"{what_to_do}")
        # a restart may change what does not alter finished records (--limit, batch size):
        # the report must select what this run now covers
        record = {**saved, "spec": asdict(spec)}
    else:
        if path_kind(out / PREDICTIONS) != "missing":
            raise RunMismatchError(f"{out} holds {PREDICTIONS} but no {RUN_FILE}: it is not a "
                                   f"run this version can continue. {what_to_do}")
        record = {"identity": identity, "spec": asdict(spec),
                  "config": pipeline.config.to_dict(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(path, record, default=str)
    return out


# -- answering (eval.answering) ----------------------------------------------------------------

def failure_kind(error: str | None) -> str:
    """A failure reason without its particulars (file:line, quoted ids, paths), so that the
    same problem of many questions is counted as one."""
    text = re.sub(r"^\S+:\d+(?: \(row \d+\))?: ", "", error or "unknown error")
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", text)
    return re.sub(r"(?<![\w.])/\S+", "...", text)[:160]


def run_eval(spec: RunSpec, pipeline: RagVQA | None = None,
             show_progress: bool | None = None,
             ray: RayOptions | str | None = None) -> RunSummary:
    """Answer (or only retrieve for) every selected question, appending as it goes.

    ``ray``: answer on a Ray cluster instead (an address such as "local" / "auto", or
    ``rag_vqa.ray_runtime.RayOptions``): workers that each hold the whole pipeline; the
    records, the resume and the identity check are the same."""
    questions, skipped, locator = check_inputs(spec)
    if pipeline is None:
        index: dict[str, Any] = {"path": spec.index} if spec.index else {}
        if spec.verify:
            index["verify"] = spec.verify
        if spec.allow_retriever_mismatch:
            index["allow_retriever_mismatch"] = True
        pipeline = RagVQA.from_config(spec.config, **({"index": index} if index else {}))
    if ray is None:
        pipeline.check()
    else:  # the workers load the models; the driver needs the fingerprints, index and KB
        from .ray_run import driver_pipeline, process_on_ray

        pipeline = driver_pipeline(pipeline)
    identity = spec.identity(pipeline)
    out = _prepare_out(spec, pipeline, identity)
    predictions = out / PREDICTIONS
    done = latest_records(read_predictions(predictions))
    retry = {q.data_id for q in questions if done.get(q.data_id, {}).get("status") == "failed"} \
        if spec.retry_failed else set()
    if retry:
        logger.info("running %d failed questions again", len(retry))
        _drop_records(predictions, retry)
        done = {k: v for k, v in done.items() if k not in retry}
    todo = [q for q in questions if q.data_id not in done]
    start = time.perf_counter()
    answered = failed = 0
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), unit="question",
               desc="evaluating", disable=not (len(todo) > 20 if show_progress is None
                                               else show_progress))
    batches = [todo[at:at + spec.batch_size] for at in range(0, len(todo), spec.batch_size)]
    results = (_process(pipeline, spec, batch, locator) for batch in batches) if ray is None \
        else process_on_ray(pipeline, spec, batches, locator, identity["pipeline"], ray)
    with bar, open(predictions, "ab") as handle, closing(results):
        for batch, records in zip(batches, results, strict=True):
            for record in records:
                handle.write(_encode(record))
                done[record["data_id"]] = record
                failed += record["status"] == "failed"
                answered += record["status"] == "ok"
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    final = [done[q.data_id] for q in questions if q.data_id in done]
    reasons = Counter(failure_kind(r.get("error")) for r in final if r["status"] == "failed")
    return RunSummary(len(questions), len(questions) - len(todo), answered, failed,
                      round(time.perf_counter() - start, 3), str(out), retried=len(retry),
                      skipped_records=skipped, failed_total=sum(reasons.values()),
                      failure_reasons=reasons.most_common(5))

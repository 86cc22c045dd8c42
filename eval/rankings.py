"""Rankings in the formats other systems read and write, so runs can be compared across systems.

- TREC run files: ``qid Q0 docid rank score tag`` (trec_eval, ranx, pyserini);
- ColBERT-style TSV: ``qid <TAB> pid <TAB> rank [<TAB> score]`` (ColBERT, PLAID, PreFLMR);
- JSONL: one query per line, ``{"data_id": ..., "retrieved": [{"passage_id", "score"}, ...]}``
  (our predictions file is one; ``query_id`` / ``question_id`` / ``qid`` and ``ranking`` are
  read as well).

:func:`load_rankings` reads any of them (by content, not by name); ``eval run --rankings FILE``
then scores a foreign ranking (PreFLMR, EchoSight ...) and feeds it to our generator instead of
our own retrieval; ``eval export`` writes a run's rankings in any of them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_vqa import RagVQA
from rag_vqa.kb.records import id_problem
from retriever.errors import UserError, UserInputError
from retriever.fileio import (
    JSONRecordError,
    atomic_write_text,
    file_digest,
    loads_record,
    require_file,
)
from retriever.index import Hit

from .datasets import EvalQuestion

if TYPE_CHECKING:
    from .runner import RunSpec

__all__ = ["FORMATS", "RankingsError", "load_rankings", "read_rankings", "format_rankings",
           "write_rankings", "run_rankings", "answer_from_rankings"]

FORMATS = ("trec", "tsv", "jsonl")
Rankings = dict[str, list[tuple[str, float]]]       # query id -> [(passage id, score)] by rank
_ID_KEYS = ("data_id", "query_id", "question_id", "qid")
_LIST_KEYS = ("retrieved", "ranking", "passages")


class RankingsError(UserError, ValueError):
    """A rankings file that cannot be read; the message names the file, line and problem."""


def _ident(value: Any, where: str, what: str) -> str:
    problem = id_problem(value)
    if problem:
        raise RankingsError(f"{where}: {what}: {problem}")
    return str(value)


def _number(text: Any, where: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise RankingsError(f"{where}: {what} {text!r} is not a number") from None
    if isinstance(text, bool) or not math.isfinite(value):
        raise RankingsError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _jsonl_row(row: Any, where: str) -> tuple[str, list[tuple[str, float]]]:
    if not isinstance(row, dict):
        raise RankingsError(f"{where}: expected a JSON object, got {type(row).__name__}")
    key = next((k for k in _ID_KEYS if k in row), None)
    listed = next((k for k in _LIST_KEYS if k in row), None)
    if key is None or listed is None:
        raise RankingsError(f"{where}: needs a query id ({' / '.join(_ID_KEYS)}) and a ranked "
                            f"list ({' / '.join(_LIST_KEYS)})")
    items = row[listed] or []
    if not isinstance(items, list):
        raise RankingsError(f"{where}: {listed!r} must be a list, got {type(items).__name__}")
    ranked = []
    for rank, item in enumerate(items, start=1):
        if isinstance(item, dict):
            pid, score = item.get("passage_id"), item.get("score", -rank)
        else:  # a bare id: scores by rank
            pid, score = item, -rank
        ranked.append((_ident(pid, where, f"passage at rank {rank}"),
                       _number(score, where, f"score at rank {rank}")))
    return _ident(row[key], where, key), ranked


def _columns(parts: list[str], where: str) -> tuple[str, str, int, float | None]:
    """(qid, pid, rank, score) of a TREC (6 columns, 'Q0' second) or ColBERT TSV line."""
    if len(parts) == 6:
        qid, _, pid, rank, score, _ = parts
    elif len(parts) in (3, 4):
        qid, pid, rank = parts[:3]
        score = parts[3] if len(parts) == 4 else None
    else:
        raise RankingsError(f"{where}: expected a TREC run line (qid Q0 docid rank score tag) "
                            f"or a ColBERT TSV line (qid pid rank [score]), got {len(parts)} "
                            "columns")
    position = _number(rank, where, "rank")
    if position < 1 or position != int(position):
        raise RankingsError(f"{where}: rank {rank!r} must be a whole number >= 1")
    return (_ident(qid, where, "query id"), _ident(pid, where, "passage id"), int(position),
            None if score is None else _number(score, where, "score"))


def read_rankings(path: str | Path) -> Rankings:
    """Every query's ranking, best first; the format is told from the content. A passage listed
    twice for one query, or two lines with one rank, is an error naming both lines."""
    path = Path(path)
    try:
        require_file(path, "rankings file")
        data = path.read_bytes()
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise RankingsError(str(exc)) from None
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    first = next((line for line in lines if line.strip()), "")
    out: Rankings = {}
    if first.lstrip().startswith("{"):
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    row = loads_record(line.encode())
                except JSONRecordError as exc:
                    raise RankingsError(f"{path}:{number}: {exc}") from None
                qid, ranked = _jsonl_row(row, f"{path}:{number}")
                if qid in out:
                    raise RankingsError(f"{path}:{number}: query {qid!r} is listed twice")
                out[qid] = ranked
        return out
    seen: dict[tuple[str, Any], int] = {}
    rows: dict[str, list[tuple[int, str, float | None]]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        qid, pid, rank, score = _columns(line.split("\t") if "\t" in line else line.split(),
                                         where)
        for key in ((qid, pid), (qid, rank)):
            if key in seen:
                raise RankingsError(f"{where}: query {qid!r} repeats "
                                    f"{'passage' if key[1] == pid else 'rank'} {key[1]!r} of "
                                    f"line {seen[key]}")
            seen[key] = number
        rows.setdefault(qid, []).append((rank, pid, score))
    for qid, items in rows.items():
        items.sort()
        out[qid] = [(pid, -rank if score is None else score) for rank, pid, score in items]
    return out


@functools.lru_cache(maxsize=4)
def _cached(path: str, digest: str) -> Rankings:
    return read_rankings(path)


def load_rankings(path: str | Path) -> Rankings:
    """:func:`read_rankings`, read once per file content (a run asks for it per batch)."""
    return _cached(str(Path(path).resolve()), file_digest(path))


def format_rankings(rankings: Mapping[str, Sequence[tuple[str, float]]], fmt: str,
                    tag: str = "rag-vqa") -> str:
    """The rankings as the text of a ``fmt`` file (see the module docstring)."""
    if fmt not in FORMATS:
        raise UserInputError(f"unknown rankings format {fmt!r}; use one of {', '.join(FORMATS)}")
    lines = []
    for qid, ranked in rankings.items():
        if fmt == "jsonl":
            lines.append(json.dumps({"data_id": qid, "retrieved": [
                {"passage_id": pid, "score": score} for pid, score in ranked]},
                ensure_ascii=False))
            continue
        for rank, (pid, score) in enumerate(ranked, start=1):
            for value in (qid, pid):
                if any(c.isspace() for c in value):
                    raise UserInputError(f"id {value!r} holds whitespace: it cannot be written as "
                                         f"{fmt}; use jsonl")
            lines.append(f"{qid} Q0 {pid} {rank} {score:.6g} {tag}" if fmt == "trec"
                         else f"{qid}\t{pid}\t{rank}\t{score:.6g}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_rankings(rankings: Mapping[str, Sequence[tuple[str, float]]], path: str | Path,
                   fmt: str, tag: str = "rag-vqa") -> Path:
    atomic_write_text(Path(path), format_rankings(rankings, fmt, tag))
    return Path(path)


def run_rankings(records: Iterable[Mapping[str, Any]]) -> Rankings:
    """The rankings of a run's prediction records (failed questions have none)."""
    return {r["data_id"]: [(h["passage_id"], float(h["score"])) for h in r.get("retrieved", [])]
            for r in records if r.get("status") == "ok"}


# -- answering from a foreign ranking -----------------------------------------------------------

def _evidence(pipeline: RagVQA, ranked: list[tuple[str, float]], k: int) -> list[Any]:
    """The pipeline's Evidence for the top-k of a ranking (KeyError: a passage not in the KB)."""
    return pipeline.evidence_for([Hit(pid, score) for pid, score in ranked[:k]])


def answer_from_rankings(pipeline: RagVQA, spec: RunSpec, ready: list[tuple[EvalQuestion, Any]]
                         ) -> list[dict[str, Any]]:
    """Records of one batch whose evidence is the ranking file's top-k for each question (our
    retriever is not asked); with retrieval_only nothing else runs, else our generator answers
    from that evidence."""
    from generator import QAItem

    from .answering import _failed, _record

    rankings = load_rankings(spec.rankings)
    k = spec.k or pipeline.config.k
    out: list[dict[str, Any] | None] = [None] * len(ready)
    todo = []
    for i, (q, image) in enumerate(ready):
        if q.data_id not in rankings:
            out[i] = _failed(q, f"no ranking for this question in {spec.rankings}")
            continue
        try:
            evidence = _evidence(pipeline, rankings[q.data_id], k)
        except KeyError as exc:
            out[i] = _failed(q, f"the ranking in {spec.rankings} names {exc.args[0]}")
            continue
        if spec.retrieval_only:
            out[i] = _record(q, None, evidence)
        else:
            todo.append((i, q, image, evidence))
    if todo:
        generated = pipeline.components.generator.answer_batch(
            [QAItem(q.question, image, ev) for _, q, image, ev in todo],
            batch_size=spec.batch_size)
        for (i, q, _, evidence), answer in zip(todo, generated):
            out[i] = {"data_id": q.data_id, "prediction": answer.answer, "raw": answer.raw,
                      "prompt": answer.prompt,
                      "retrieved": [{"passage_id": e.passage_id, "score": e.score}
                                    for e in evidence],
                      "used_passages": list(answer.passage_ids), "timings": {},
                      "status": "ok" if answer.error is None else "failed",
                      "error": answer.error}
    return out  # type: ignore[return-value]

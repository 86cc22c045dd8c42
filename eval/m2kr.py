"""M2KR retrieval benchmarks (PreFLMR's M2KR and ReT's ReT-M2KR JSONL): the query files, which
sub-benchmark a file is, the cut-offs each one is reported at, and the one table across
sub-benchmarks and runs shaped like the ReT README's.

An M2KR ``<NAME>_data`` file (parquet, or JSONL) holds ``question_id``, ``question``,
``instruction``, ``img_path`` / ``img_id``, ``pos_item_ids``, ``pos_item_contents``, ``answers``,
``gold_answer`` and ``question_type`` (data-formats.md); ReT-M2KR JSONL rows (``data_id``,
``passage_id``, ...) are read as well. Every question's ``split`` is its sub-benchmark, so a
report breaks retrieval down per benchmark even when one run holds several.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_vqa.kb.errors import KBFormatError, UnsafeImagePath
from rag_vqa.kb.imagerefs import check_image_ref
from rag_vqa.kb.sources import PARQUET_SUFFIXES, iter_parquet
from retriever.fileio import JSONRecordError, loads_json, read_jsonl_records

from .datasets import DatasetError, EvalQuestion, _answers, _FieldError, _ids, _jsonl, _ret, _text

__all__ = ["Benchmark", "BENCHMARKS", "benchmark_of", "m2kr_questions", "m2kr_table",
           "table_markdown"]


@dataclass(frozen=True)
class Benchmark:
    label: str          # as papers print it
    k: int              # the headline cut-off (metrics.md)
    pseudo: bool        # PR@K is reported too (answers exist)


# metrics.md: InfoSeek, E-VQA, OKVQA, OVEN, KVQA at R@5 (InfoSeek, E-VQA, OKVQA also PR@5);
# WIT at R@10; IGLUE and LLaVA at R@1. In the ReT README's column order.
BENCHMARKS: dict[str, Benchmark] = {
    "wit": Benchmark("WIT", 10, False), "iglue": Benchmark("IGLUE", 1, False),
    "kvqa": Benchmark("KVQA", 5, False), "oven": Benchmark("OVEN", 5, False),
    "llava": Benchmark("LLaVA", 1, False), "infoseek": Benchmark("InfoSeek", 5, True),
    "evqa": Benchmark("E-VQA", 5, True), "okvqa": Benchmark("OKVQA", 5, True),
}
_BY_LABEL = {b.label: b for b in BENCHMARKS.values()}


def benchmark_of(path: str | Path) -> str:
    """The sub-benchmark a query file belongs to, from its name or its folders' names
    (``Infoseek_data/test-00000-of-00001.parquet``, ``evqa_test_m2kr.jsonl``); an unknown name
    is kept as the file's stem."""
    path = Path(path)
    for part in (path.name, *(p.name for p in path.parents)):
        token = re.split(r"[_\-.]", part.lower(), maxsplit=1)[0].replace("-", "")
        if token in BENCHMARKS:
            return BENCHMARKS[token].label
    return path.name.split(".")[0]


def _rows(path: Path) -> Iterator[tuple[str, Any, Exception | None]]:
    """(where, record, error) of a parquet or JSONL query file."""
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        rows = iter_parquet(path)
        try:
            for _, location, value, problem in rows:
                yield f"{path}:{location}", value, problem
        except KBFormatError as exc:
            raise DatasetError(str(exc)) from None
        return
    for number, row, error in read_jsonl_records(path, loads=loads_json):
        yield f"{path}:{number}", row, error


def _image(row: dict[str, Any]) -> str | None:
    """``img_path`` when it is a path inside the image root, else ``img_id`` (M2KR's paths are
    often the authors' absolute ones; --image-map maps ids to anything else)."""
    path, image_id = row.get("img_path"), row.get("img_id")
    for name, value in (("img_path", path), ("img_id", image_id)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise _FieldError(name, f"expected a string, got {type(value).__name__}")
        try:
            check_image_ref(value)
            return value
        except UnsafeImagePath as exc:
            if name == "img_id" or image_id is None:
                raise _FieldError(name, exc.reason) from None
    return None


def _fill(row: dict[str, Any], q: EvalQuestion, benchmark: str) -> None:
    q.split = benchmark
    if "question_id" not in row and "data_id" in row:   # a ReT-M2KR JSONL row
        _ret(row, q)
        return
    q.question = _text(row, "question") or ""
    q.instruction = _text(row, "instruction")
    q.image = _image(row)
    q.positives = _ids(row.get("pos_item_ids"), "pos_item_ids")
    answers = _answers(row.get("answers"), "answers")
    gold = _text(row, "gold_answer")
    q.answers = answers or ([gold] if gold else [])
    q.question_type = _text(row, "question_type")
    if not (q.question or q.image):
        raise _FieldError("question", "neither a question nor an image")


def m2kr_questions(path: Path, unusable: list[str]) -> list[EvalQuestion]:
    """Questions of an M2KR (or ReT-M2KR) query file, each with its benchmark as ``split``."""
    benchmark = benchmark_of(path)
    try:
        return list(_jsonl(path, lambda row, q: _fill(row, q, benchmark), unusable,
                           rows=_rows(path), id_fields=("question_id", "data_id")))
    except JSONRecordError as exc:  # an unreadable file as a whole
        raise DatasetError(f"{path}: {exc}") from None


# -- the table ----------------------------------------------------------------------------------

def _value(metrics: dict[str, Any] | None, name: str, k: int) -> float | None:
    values = (metrics or {}).get(name) or {}
    return values.get(f"@{k}")


def m2kr_table(runs: Sequence[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    """One row per model, one column per benchmark metric at its headline K: the ReT README's
    table. ``runs``: (label, report); runs with one label (default: the retriever) share a row,
    so one run per benchmark makes one line. A run's benchmarks are its report's retrieval
    splits (or, without splits, its question file's name). Values in percent."""
    columns: list[tuple[str, str, int]] = []    # (benchmark, metric, k)
    rows: dict[str, dict[str, Any]] = {}
    for label, report in runs:
        retriever = (report.get("models") or {}).get("retriever")
        label = label or str(retriever)
        retrieval = report.get("retrieval") or {}
        per = dict(retrieval.get("per_split") or {})
        if not per and retrieval:
            per = {benchmark_of((report.get("dataset_files") or {}).get("questions", {})
                                .get("path", "run")): retrieval}
        row = rows.setdefault(label, {"run": label, "retriever": retriever, "values": {}})
        cells = row["values"]
        for name, metrics in per.items():
            bench = _BY_LABEL.get(name, Benchmark(name, 5, bool(metrics.get("pseudo_recall"))))
            wanted = [("recall", "R")] + ([("pseudo_recall", "PR")] if bench.pseudo else [])
            for metric, short in wanted:
                cells[f"{name} {short}@{bench.k}"] = _value(metrics, metric, bench.k)
                if (name, short, bench.k) not in columns:
                    columns.append((name, short, bench.k))
    order = {b.label: i for i, b in enumerate(BENCHMARKS.values())}
    columns.sort(key=lambda c: (order.get(c[0], len(order)), c[1] != "R"))
    names = [f"{b} {m}@{k}" for b, m, k in columns]
    for row in rows.values():
        row["values"] = {n: row["values"].get(n) for n in names}
    return {"units": "percent", "columns": names, "rows": list(rows.values())}


def table_markdown(table: dict[str, Any]) -> str:
    """The table as Markdown; a benchmark a run did not cover is "n/a"."""
    header = "| run | retriever | " + " | ".join(table["columns"]) + " |"
    lines = [f"Retrieval (%, M2KR conventions; {len(table['rows'])} run(s))", "", header,
             "|---|---|" + "---:|" * len(table["columns"])]
    for row in table["rows"]:
        cells = ["n/a" if v is None else f"{v:.1f}" for v in row["values"].values()]
        lines.append(f"| {row['run']} | {row['retriever']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

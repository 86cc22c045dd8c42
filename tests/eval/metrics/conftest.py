"""Fixture writers for the metrics tests: files in the official InfoSeek / E-VQA layouts."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

EVQA_COLUMNS = ["question", "answer", "dataset_image_ids", "dataset_name", "dataset_category_id",
                "question_type", "wikipedia_url", "wikipedia_title", "evidence",
                "evidence_section_id", "evidence_section_title", "encyclopedic_vqa_split",
                "question_original", "wikipedia_url_used_in_train"]


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_evqa_csv(path: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """(question, answer, question_type) rows, padded with the real file's other columns."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVQA_COLUMNS)
        writer.writeheader()
        for i, (question, answer, qtype) in enumerate(rows):
            writer.writerow({
                "question": question, "answer": answer, "question_type": qtype,
                "dataset_image_ids": f"img{i}a|img{i}b", "dataset_name": "landmarks",
                "dataset_category_id": str(1000 + i),
                "wikipedia_url": "https://en.wikipedia.org/wiki/A|https://en.wikipedia.org/wiki/B"
                if qtype == "2_hop" else "https://en.wikipedia.org/wiki/A",
                "wikipedia_title": "A", "evidence": "Some evidence, with a comma.\nAnd a newline.",
                "evidence_section_id": "3", "evidence_section_title": "History",
                "encyclopedic_vqa_split": "test", "question_original": question,
                "wikipedia_url_used_in_train": "False"})
    return path


def infoseek_rows(spec: Iterable[tuple[str, str, str, Any]]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(data_id, question_type, data_split, answers or (lo, hi)) -> reference and qtype rows in
    the official layout (numerical answer_eval as [{"wikidata": v, "range": [lo, hi]}])."""
    refs, qtypes = [], []
    for data_id, qtype, split, answer in spec:
        if qtype == "Numerical":
            lo, hi = answer
            answer_eval: Any = [{"wikidata": (lo + hi) / 2, "range": [lo, hi]}]
            answer_list: Any = [(lo + hi) / 2]
        else:
            answer_eval, answer_list = list(answer), list(answer)[:1]
        refs.append({"data_id": data_id, "image_id": f"oven_{data_id}", "question": "q?",
                     "answer": answer_list, "answer_eval": answer_eval, "data_split": split})
        qtypes.append({"data_id": data_id, "question_type": qtype})
    return refs, qtypes


@pytest.fixture
def infoseek_files(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    def make(spec: Iterable[tuple[str, str, str, Any]]) -> tuple[Path, Path]:
        refs, qtypes = infoseek_rows(spec)
        return (write_jsonl(tmp_path / "infoseek_val.jsonl", refs),
                write_jsonl(tmp_path / "infoseek_val_qtype.jsonl", qtypes))
    return make


@pytest.fixture
def jsonl() -> Callable[[Path, Iterable[Any]], Path]:
    return write_jsonl


@pytest.fixture
def evqa_csv() -> Callable[[Path, Iterable[tuple[str, str, str]]], Path]:
    return write_evqa_csv

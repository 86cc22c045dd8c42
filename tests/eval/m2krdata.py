"""M2KR files in the published layouts, over the bundled sample: ``<NAME>_passages`` (passage_id,
passage_content "title: ... content: ...", language, title) and ``<NAME>_data`` query shards
(question_id, question, instruction, img_path, img_id, pos_item_ids, pos_item_contents, answers,
gold_answer, question_type) as parquet, as the Hugging Face dataset ships them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag_vqa.samples import SAMPLE_KB, sample_passages
from retriever.fileio import read_jsonl_records

INSTRUCTION = "Using the provided image, obtain documents that address the subsequent question: "


def m2kr_id(passage_id: str) -> str:
    """PreFLMR-style passage ids (WikiWeb_<title>_<n>)."""
    name, _, number = passage_id.rpartition("-")
    return f"WikiWeb_{name.title()}_{number}"


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def passages_file(folder: Path) -> Path:
    rows = [{"passage_id": m2kr_id(p.passage_id),
             "passage_content": f"title: {p.title} content: {p.text}", "language": "en",
             "title": p.title} for p in sample_passages()]
    return write_parquet(folder / "Infoseek_passages" / "train_passages-00000-of-00001.parquet",
                         rows)


def sample_queries() -> list[dict[str, Any]]:
    return [row for _, row, _ in read_jsonl_records(SAMPLE_KB / "questions.jsonl")]


def data_file(folder: Path, name: str, ids: list[int]) -> Path:
    """``<name>_data/test-00000-of-00001.parquet`` with the sample questions ``ids``."""
    texts = {m2kr_id(p.passage_id): p.text for p in sample_passages()}
    rows = []
    for i in ids:
        q = sample_queries()[i]
        positives = [m2kr_id(p) for p in q["passage_id"]]
        rows.append({"question_id": f"{name}_test_{i:05d}", "question": q["question"],
                     "instruction": INSTRUCTION, "img_path": q["image_path"],
                     "img_id": f"oven_{i:08d}", "pos_item_ids": positives,
                     "pos_item_contents": [texts[p] for p in positives],
                     "answers": q["answer"], "gold_answer": q["answer"][0],
                     "question_type": name.lower()})
    return write_parquet(folder / f"{name}_data" / "test-00000-of-00001.parquet", rows)

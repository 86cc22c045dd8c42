"""Small knowledge-base sources in the real published formats, written by the tests."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest

# pyarrow reads M2KR parquet shards; it is an optional dependency of the project
requires_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                      reason="pyarrow is not installed")

WORDS = ["the", "tower", "was", "built", "in", "Paris", "for", "world", "fair", "of", "iron",
         "engineer", "Gustave", "Eiffel", "designed", "structure", "visitors", "each", "year",
         "encyclopedic", "is", "a", "landmark", "and", "1889", "330", "metres", "tall"]


def sentence_text(seed: int, words: int, paragraph_every: int = 0) -> str:
    """Deterministic prose: sentences of the WORDS above, optional paragraph breaks."""
    rng = random.Random(seed)
    out, sentence = [], []
    for i in range(words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(6, 14):
            out.append(" ".join(sentence).capitalize() + rng.choice([".", ",", ";", "!"]))
            sentence = []
        if paragraph_every and i and i % paragraph_every == 0:
            out.append("\n\n")
    if sentence:
        out.append(" ".join(sentence) + ".")
    return " ".join(out).replace(" \n\n ", "\n\n")


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_jsonl(path: Path, records: list[Any], gz: bool = False) -> Path:
    return write_lines(path, [r if isinstance(r, str) else json.dumps(r) for r in records], gz)


def write_parquet(path: Path, rows: list[dict[str, Any]],
                  row_group_size: int | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def ret_records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"passage_id": f"p{i}", "passage_text": sentence_text(i, 12) if i % 5 else "",
             "passage_image_path": f"images/{i}.jpg" if i % 3 else None} for i in range(start, n)]


def wiki_records(n: int) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        record = {"wikidata_id": f"Q{100 + i}", "wikipedia_title": f"Article {i}",
                  "wikipedia_content": sentence_text(i, 20 + 37 * (i % 4), paragraph_every=25)}
        if i % 2 == 0:
            record["wikipedia_image_url"] = f"https://upload.example.org/img{i}.png"
        records.append(record)
    return records


def evqa_article(i: int, sections: int = 3) -> dict[str, Any]:
    texts = [sentence_text(100 * i + s, 10 + 60 * (s % 2)) for s in range(sections)]
    return {"title": f"Entity {i}", "url": f"https://en.wikipedia.org/wiki/Entity_{i}",
            "section_titles": [f"Section {s}" for s in range(sections)], "section_texts": texts,
            "image_urls": [f"https://upload.wikimedia.org/e{i}_{k}.jpg" for k in range(3)],
            "image_reference_descriptions": [f"picture {k} of {{entity}} \"{i}\""
                                             for k in range(3)],
            "image_section_indices": [0, sections - 1, sections - 1]}


def write_evqa(path: Path, articles: dict[str, Any], gz: bool = False, indent: int | None = None
               ) -> Path:
    data = json.dumps(articles, indent=indent).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def evqa_kb(n: int) -> dict[str, Any]:
    return {f"https://en.wikipedia.org/wiki/Entity_{i}": evqa_article(i) for i in range(n)}

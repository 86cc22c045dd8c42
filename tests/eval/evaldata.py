"""Small question sets in the official formats, over the bundled sample knowledge base."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from rag_vqa.samples import question_image, sample_questions

SPLITS = ["val_unseen_question", "val_unseen_entity"]


def infoseek_files(folder: Path, repeat: int = 1) -> dict[str, Path]:
    """infoseek_val.jsonl, its qtype and withkb files, and OVEN-style images (<image_id>.jpg)."""
    images = folder / "oven_images"
    images.mkdir(parents=True, exist_ok=True)
    rows, qtypes, withkb = [], [], []
    for r in range(repeat):
        for i, q in enumerate(sample_questions()):
            data_id = f"infoseek_val_{r:03d}{i:02d}"
            image_id = f"oven_{i:05d}"
            shutil.copy(question_image(q), images / f"{image_id}.jpg")
            rows.append({"data_id": data_id, "image_id": image_id, "question": q.question,
                         "answer": q.answer, "answer_eval": q.answer,
                         "data_split": SPLITS[i % 2]})
            qtypes.append({"data_id": data_id, "question_type": "String"})
            withkb.append({"data_id": data_id, "entity_id": q.country, "entity_text": q.country})
    paths = {"questions": folder / "infoseek_val.jsonl",
             "qtypes": folder / "infoseek_val_qtype.jsonl",
             "withkb": folder / "infoseek_val_withkb.jsonl", "images": images}
    for key, data in (("questions", rows), ("qtypes", qtypes), ("withkb", withkb)):
        paths[key].write_text("\n".join(json.dumps(r) for r in data) + "\n")
    return paths


EVQA_COLUMNS = ["question", "answer", "dataset_image_ids", "dataset_name",
                "dataset_category_id", "question_type", "wikipedia_url", "wikipedia_title",
                "evidence", "evidence_section_id", "evidence_section_title",
                "encyclopedic_vqa_split", "question_original", "wikipedia_url_used_in_train"]


def evqa_files(folder: Path) -> dict[str, Path]:
    """test.csv (quoted fields with commas and newlines) and landmark images <id>.jpg."""
    images = folder / "evqa_images"
    images.mkdir(parents=True, exist_ok=True)
    path = folder / "test.csv"
    types = ["templated", "automatic", "multi_answer", "2_hop", "templated", "automatic"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, EVQA_COLUMNS)
        writer.writeheader()
        for i, q in enumerate(sample_questions()):
            image_id = f"{i:x}{i:x}{i:x}0f00d{i}"
            shutil.copy(question_image(q), images / f"{image_id}.jpg")
            writer.writerow({"question": q.question, "answer": "|".join(q.answer),
                             "dataset_image_ids": f"{image_id}|other{i}",
                             "dataset_name": "landmarks", "dataset_category_id": str(i),
                             "question_type": types[i], "wikipedia_url": q.country,
                             "wikipedia_title": q.country.title(),
                             "evidence": "A passage, with a comma,\nand a newline.",
                             "evidence_section_id": "0", "evidence_section_title": "Intro",
                             "encyclopedic_vqa_split": "test", "question_original": q.question,
                             "wikipedia_url_used_in_train": "False"})
    return {"questions": path, "images": images}

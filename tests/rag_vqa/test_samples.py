"""The bundled sample knowledge base: small, consistent, and exactly what samples.py draws."""

import json

import numpy as np
from PIL import Image

from rag_vqa.samples import FLAGS, SAMPLE_KB, sample_passages, sample_questions, write_sample_images


def test_bundled_files_match_what_the_code_draws(tmp_path):
    write_sample_images(tmp_path)
    for name in ["questions.jsonl"] + [f"images/{c}.png" for c in FLAGS]:
        assert (tmp_path / name).read_bytes() == (SAMPLE_KB / name).read_bytes(), name
    for q in sample_questions():
        ours = np.asarray(Image.open(tmp_path / "question_images" / f"{q.data_id}.jpg"))
        bundled = np.asarray(Image.open(SAMPLE_KB / "question_images" / f"{q.data_id}.jpg"))
        assert np.abs(ours.astype(int) - bundled.astype(int)).max() <= 2


def test_sample_is_small_and_consistent():
    size = sum(p.stat().st_size for p in SAMPLE_KB.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024
    passages = sample_passages()
    assert len(passages) == 60 and len({p.passage_id for p in passages}) == 60
    assert all(p.image.is_file() and p.text and p.title for p in passages)
    ids = {p.passage_id for p in passages}
    for line in (SAMPLE_KB / "questions.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert set(row) >= {"data_id", "instruction", "question", "image_path", "passage_id",
                            "answer"}
        assert set(row["passage_id"]) <= ids and (SAMPLE_KB / row["image_path"]).is_file()
        text = " ".join(p.text for p in passages if p.passage_id in row["passage_id"])
        assert any(a.lower() in text.lower() for a in row["answer"])
    pixels = {Image.open(p.image).tobytes() for p in passages}
    assert len(pixels) == 30  # one distinct flag per country

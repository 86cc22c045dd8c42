"""Small helpers shared by tests (importable as ``tests.helpers``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def random_image(seed: int, size: tuple[int, int] = (40, 52), mode: str = "RGB") -> Image.Image:
    """A seeded noise image of the given size (width, height) and PIL mode."""
    rng = np.random.default_rng(seed)
    array = (rng.random((size[1], size[0], 4)) * 255).astype(np.uint8)
    image = Image.fromarray(array, "RGBA")
    return image if mode == "RGBA" else image.convert(mode)


def clustered_embeddings(n_docs: int, n_queries: int, seed: int = 0, tokens: int = 32,
                         dim: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ReT-shaped unit vectors with topic structure: documents mix a few topic directions plus
    their own, and each query is a noisy view of one target document's tokens.

    Returns docs (N, tokens, dim) float16, queries (Q, tokens, dim) float32, targets (Q,)."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    topics = unit(rng.standard_normal((max(4, n_docs // 20), dim)))
    doc_topic = rng.integers(0, len(topics), size=(n_docs, 2))
    own = unit(rng.standard_normal((n_docs, 4, dim)))
    which_topic = rng.integers(0, 2, size=(n_docs, tokens))
    which_own = rng.integers(0, 4, size=(n_docs, tokens))
    base = topics[np.take_along_axis(doc_topic, which_topic, axis=1)]
    docs = unit(base + 0.8 * np.take_along_axis(own, which_own[..., None], axis=1)
                + 0.3 * rng.standard_normal((n_docs, tokens, dim)) / np.sqrt(dim))
    targets = rng.choice(n_docs, size=n_queries, replace=False)
    queries = unit(docs[targets][:, rng.permutation(tokens)]
                   + 0.5 * rng.standard_normal((n_queries, tokens, dim)) / np.sqrt(dim))
    return docs.astype(np.float16), queries.astype(np.float32), targets


KB_WORDS = ["the", "bridge", "tower", "river", "museum", "painting", "bird", "flower", "city",
            "king", "island", "lake"]


def ret_jsonl_kb(folder: Path, n: int, *, seed: int = 0, image_every: int = 4,
                 words: tuple[int, int] = (3, 40), blank_every: int = 9,
                 image_size: tuple[int, int, int] = (30, 7, 24)) -> tuple[Path, Path]:
    """A ReT-JSONL knowledge base of ``n`` passages imported into ``folder/kb``: one in
    ``image_every`` with an image, as many with a missing one, one with a broken image, one in
    ``blank_every`` without text. Returns (kb folder, image root)."""
    from rag_vqa.kb import import_kb

    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    base, spread, height = image_size
    lines = []
    for i in range(n):
        image = None
        if i % image_every == 0:
            random_image(i, size=(base + i % spread, height)).save(images / f"p{i}.png")
            image = f"p{i}.png"
        elif i % image_every == 1:
            image = f"missing/p{i}.jpg"
        text = " ".join(rng.choice(KB_WORDS, size=int(rng.integers(*words))))
        lines.append({"passage_id": f"P{i}", "passage_text": text if i % blank_every else "",
                      "passage_image_path": image})
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    lines.append({"passage_id": "P-broken", "passage_text": "a passage with a broken image",
                  "passage_image_path": "broken.jpg"})
    source = folder / "kb.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    import_kb("ret-jsonl", source, folder / "kb", images, progress=False)
    return folder / "kb", images

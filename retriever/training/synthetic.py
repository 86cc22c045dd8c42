"""A synthetic multimodal retrieval task, for tests, benchmarks and smoke runs of training.

Each entity is a (colour, word) pair. Its passage shows the colour and starts with the word; its
queries show the colour in another picture (other shapes, another size) and start with the word
too (so that even random tiny text towers see it in the same context). Neither modality alone
identifies the entity, so a retriever must learn to use both.
Files are written in the ReT JSONL formats the trainer reads.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["COLOURS", "WORDS", "write_synthetic_task"]

COLOURS = [(220, 40, 40), (40, 180, 60), (40, 70, 220), (240, 210, 40), (160, 60, 200),
           (40, 200, 210), (250, 140, 30), (120, 120, 120)]
WORDS = ["falcon", "harbor", "violin", "glacier", "lantern", "meadow", "orbit", "pepper"]


def _picture(colour: tuple[int, int, int], rng: random.Random, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    for _ in range(3):  # distracting shapes in random greys
        x0, y0 = rng.randrange(size // 2), rng.randrange(size // 2)
        grey = rng.randrange(256)
        draw.rectangle([x0, y0, x0 + rng.randrange(4, size // 3), y0 + rng.randrange(4, size // 3)],
                       fill=(grey, grey, grey))
    return image


def write_synthetic_task(folder: str | Path, colours: int = 8, words: int = 8,
                         train_per_entity: int = 8, val_per_entity: int = 2, seed: int = 0
                         ) -> dict[str, Path]:
    """passages.jsonl, train.jsonl, val.jsonl and images/ under ``folder``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    passages, splits = [], {"train": [], "val": []}
    for c in range(colours):
        for w in range(words):
            entity = f"e{c}{w}"
            _picture(COLOURS[c], rng, 40).save(folder / "images" / f"{entity}.png")
            passages.append({"passage_id": entity, "passage_image_path": f"images/{entity}.png",
                             "passage_text": f"{WORDS[w]}: an article and its story"})
            for split, count in (("train", train_per_entity), ("val", val_per_entity)):
                for i in range(count):
                    name = f"{split}-{entity}-{i}"
                    _picture(COLOURS[c], rng, rng.choice([32, 48, 64])).save(
                        folder / "images" / f"{name}.png")
                    splits[split].append({
                        "data_id": name, "instruction": "",
                        "question": f"{WORDS[w]}: " + rng.choice(
                            ["which one is it?", "tell me about it", "what do we know?"]),
                        "image_path": f"images/{name}.png", "passage_id": [entity]})
    paths = {"passages": folder / "passages.jsonl", "train": folder / "train.jsonl",
             "val": folder / "val.jsonl", "images": folder}
    paths["passages"].write_text("\n".join(json.dumps(p) for p in passages) + "\n")
    for split in ("train", "val"):
        paths[split].write_text("\n".join(json.dumps(q) for q in splits[split]) + "\n")
    return paths

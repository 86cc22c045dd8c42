"""The bundled sample knowledge base: 30 countries, two passages each (ReT JSONL, with titles),
one flag image per country, and a handful of image+question samples.

The passages (``data/sample_kb/passages.jsonl``) are written by hand; the images are drawn by
this module (flags are simple geometry), so everything is generated and freely usable. Run
``python -m rag_vqa.samples`` to redraw the images and questions; a test checks that the committed
files match what this code draws.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from retriever.fileio import read_jsonl_records

__all__ = ["SAMPLE_KB", "FLAGS", "SamplePassage", "SampleQuestion", "draw_flag",
           "photo_of_flag", "question_image", "sample_passages", "sample_questions",
           "write_sample_images"]

SAMPLE_KB = Path(__file__).parent / "data" / "sample_kb"

RGB = tuple[int, int, int]
_WHITE, _RED, _BLUE, _GREEN = (255, 255, 255), (206, 17, 38), (0, 56, 168), (0, 135, 81)
_YELLOW, _BLACK, _ORANGE = (252, 209, 22), (0, 0, 0), (255, 136, 62)


def _bands(colours: list[RGB], vertical: bool, weights: list[int] | None = None
           ) -> Callable[[ImageDraw.ImageDraw, int, int], None]:
    weights = weights or [1] * len(colours)

    def paint(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
        total, pos = sum(weights), 0
        for colour, weight in zip(colours, weights):
            nxt = pos + weight
            if vertical:
                draw.rectangle([w * pos // total, 0, w * nxt // total, h], fill=colour)
            else:
                draw.rectangle([0, h * pos // total, w, h * nxt // total], fill=colour)
            pos = nxt
    return paint


def _disc(field: RGB, colour: RGB, centre_x: float = 0.5) -> Callable:
    def paint(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
        draw.rectangle([0, 0, w, h], fill=field)
        r, cx = 0.3 * h, centre_x * w
        draw.ellipse([cx - r, h / 2 - r, cx + r, h / 2 + r], fill=colour)
    return paint


def _nordic(field: RGB, cross: RGB, border: RGB | None = None) -> Callable:
    def paint(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
        draw.rectangle([0, 0, w, h], fill=field)
        cx, cy = int(w * 0.36), h // 2
        for colour, half in ((border, h // 7), (cross, h // 11)) if border else ((cross, h // 10),):
            draw.rectangle([cx - half, 0, cx + half, h], fill=colour)
            draw.rectangle([0, cy - half, w, cy + half], fill=colour)
    return paint


def _swiss(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    draw.rectangle([0, 0, w, h], fill=(218, 41, 28))
    side, arm = min(w, h), min(w, h) // 5
    cx, cy, half = w // 2, h // 2, int(side * 0.3)
    draw.rectangle([cx - arm // 2, cy - half, cx + arm // 2, cy + half], fill=_WHITE)
    draw.rectangle([cx - half, cy - arm // 2, cx + half, cy + arm // 2], fill=_WHITE)


FLAGS: dict[str, Callable] = {
    "france": _bands([(0, 35, 149), _WHITE, (237, 41, 57)], vertical=True),
    "italy": _bands([(0, 146, 70), _WHITE, (206, 43, 55)], vertical=True),
    "germany": _bands([_BLACK, (221, 0, 0), (255, 206, 0)], vertical=False),
    "ukraine": _bands([(0, 87, 183), (255, 215, 0)], vertical=False),
    "poland": _bands([_WHITE, (220, 20, 60)], vertical=False),
    "japan": _disc(_WHITE, (188, 0, 45)),
    "sweden": _nordic((0, 106, 167), (254, 204, 0)),
    "switzerland": _swiss,
    "ireland": _bands([(22, 155, 98), _WHITE, _ORANGE], vertical=True),
    "belgium": _bands([_BLACK, (253, 218, 36), (239, 51, 64)], vertical=True),
    "netherlands": _bands([(174, 28, 40), _WHITE, (33, 70, 139)], vertical=False),
    "austria": _bands([(200, 16, 46), _WHITE, (200, 16, 46)], vertical=False),
    "hungary": _bands([(205, 42, 62), _WHITE, (67, 111, 77)], vertical=False),
    "russia": _bands([_WHITE, (0, 57, 166), (213, 43, 30)], vertical=False),
    "bulgaria": _bands([_WHITE, (0, 150, 110), (214, 38, 18)], vertical=False),
    "estonia": _bands([(0, 114, 206), _BLACK, _WHITE], vertical=False),
    "lithuania": _bands([(253, 185, 19), (0, 106, 68), (193, 39, 45)], vertical=False),
    "romania": _bands([(0, 43, 127), _YELLOW, _RED], vertical=True),
    "nigeria": _bands([(0, 135, 81), _WHITE, (0, 135, 81)], vertical=True),
    "mali": _bands([(20, 181, 58), _YELLOW, _RED], vertical=True),
    "guinea": _bands([_RED, _YELLOW, (0, 148, 96)], vertical=True),
    "peru": _bands([(217, 16, 35), _WHITE, (217, 16, 35)], vertical=True),
    "finland": _nordic(_WHITE, (0, 47, 108)),
    "denmark": _nordic((200, 16, 46), _WHITE),
    "norway": _nordic((186, 12, 47), (0, 32, 91), border=_WHITE),
    "iceland": _nordic((2, 82, 156), (220, 30, 53), border=_WHITE),
    "bangladesh": _disc((0, 106, 78), (244, 42, 65), centre_x=0.45),
    "palau": _disc((74, 173, 214), (255, 222, 0), centre_x=0.45),
    "indonesia": _bands([(255, 0, 0), _WHITE], vertical=False),
    "gabon": _bands([(0, 158, 96), _YELLOW, (58, 117, 196)], vertical=False),
}


def draw_flag(country: str, size: tuple[int, int] = (240, 160)) -> Image.Image:
    image = Image.new("RGB", size, _WHITE)
    FLAGS[country](ImageDraw.Draw(image), *size)
    return image


def photo_of_flag(country: str, seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """The flag on a pole against a sky, slightly rotated and blurred: a stand-in for a photo."""
    rng = random.Random(seed)
    sky = (120 + rng.randrange(40), 170 + rng.randrange(40), 230)
    photo = Image.new("RGB", size, sky)
    draw = ImageDraw.Draw(photo)
    draw.rectangle([40, 30, 46, size[1]], fill=(90, 90, 90))
    flag = draw_flag(country, (180, 120)).rotate(rng.uniform(-6, 6), expand=True,
                                                  fillcolor=sky)
    photo.paste(flag, (47, 34))
    return photo.filter(ImageFilter.GaussianBlur(0.8))


@dataclass(frozen=True)
class SamplePassage:
    passage_id: str
    title: str
    text: str
    image: Path


def sample_passages(folder: Path = SAMPLE_KB) -> list[SamplePassage]:
    """The bundled passages, read from their ReT JSONL file."""
    out = []
    for number, row, error in read_jsonl_records(folder / "passages.jsonl"):
        if error is not None:
            raise ValueError(f"{folder / 'passages.jsonl'}:{number}: {error}")
        out.append(SamplePassage(row["passage_id"], row["title"], row["passage_text"],
                                 folder / row["passage_image_path"]))
    return out


@dataclass(frozen=True)
class SampleQuestion:
    data_id: str
    question: str
    country: str
    answer: list[str]
    passage_id: list[str]


QUESTIONS = [
    SampleQuestion("q1", "What is the capital of the country with this flag?", "japan",
                   ["Tokyo"], ["japan-0"]),
    SampleQuestion("q2", "What are the official languages of the country that flies this flag?",
                   "ireland", ["Irish and English", "Irish", "English"], ["ireland-0"]),
    SampleQuestion("q3", "What is the shape of this flag?", "switzerland", ["square"],
                   ["switzerland-1"]),
    SampleQuestion("q4", "What is the capital of the country that uses this flag?", "norway",
                   ["Oslo"], ["norway-0"]),
    SampleQuestion("q5", "On which bay does the country with this flag lie?", "bangladesh",
                   ["Bay of Bengal", "Bengal"], ["bangladesh-0"]),
    SampleQuestion("q6", "Which ocean borders the country of this flag?", "peru",
                   ["Pacific Ocean", "Pacific"], ["peru-0"]),
]
INSTRUCTION = "Retrieve documents that provide an answer to the question alongside the image:"


def sample_questions() -> list[SampleQuestion]:
    return list(QUESTIONS)


def question_image(question: SampleQuestion, folder: Path = SAMPLE_KB) -> Path:
    return folder / "question_images" / f"{question.data_id}.jpg"


def write_sample_images(folder: Path = SAMPLE_KB) -> None:
    """(Re)draw the flag images, the question photos and questions.jsonl (ReT JSONL queries)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "question_images").mkdir(parents=True, exist_ok=True)
    for country in FLAGS:
        draw_flag(country).save(folder / "images" / f"{country}.png", optimize=True)
    lines = []
    for i, q in enumerate(QUESTIONS):
        photo_of_flag(q.country, seed=i).save(folder / "question_images" / f"{q.data_id}.jpg",
                                              quality=85)
        lines.append(json.dumps({"data_id": q.data_id, "instruction": INSTRUCTION,
                                 "question": q.question,
                                 "image_path": f"question_images/{q.data_id}.jpg",
                                 "passage_id": q.passage_id, "answer": q.answer}))
    (folder / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_sample_images(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE_KB)

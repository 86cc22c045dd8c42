"""A small built-in multimodal sample: national flags drawn in code, each with a short passage,
and photo-like queries (the same flag drawn at another size, with a question).

Drawn at run time, so nothing binary ships with the package; the facts are public knowledge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = ["SampleDocument", "SampleQuery", "sample_documents", "sample_queries", "draw_flag"]

_BLUE, _WHITE, _RED = (0, 85, 164), (255, 255, 255), (239, 65, 53)
_GREEN, _BLACK, _GOLD = (0, 146, 70), (0, 0, 0), (255, 204, 0)
_YELLOW, _SKY = (255, 213, 0), (0, 91, 187)


def _stripes(colours: list[tuple[int, int, int]], vertical: bool) -> Callable[[Image.Image], None]:
    def paint(img: Image.Image) -> None:
        draw = ImageDraw.Draw(img)
        w, h = img.size
        n = len(colours)
        for i, colour in enumerate(colours):
            if vertical:
                draw.rectangle([i * w // n, 0, (i + 1) * w // n, h], fill=colour)
            else:
                draw.rectangle([0, i * h // n, w, (i + 1) * h // n], fill=colour)
    return paint


def _disc(background, colour) -> Callable[[Image.Image], None]:
    def paint(img: Image.Image) -> None:
        draw = ImageDraw.Draw(img)
        w, h = img.size
        draw.rectangle([0, 0, w, h], fill=background)
        r = 0.3 * h
        draw.ellipse([w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r], fill=colour)
    return paint


def _cross(background, colour, nordic: bool) -> Callable[[Image.Image], None]:
    def paint(img: Image.Image) -> None:
        draw = ImageDraw.Draw(img)
        w, h = img.size
        draw.rectangle([0, 0, w, h], fill=background)
        t = h // 5
        cx = int(w * 0.36) if nordic else w // 2
        arm = w if nordic else int(h * 0.6)
        draw.rectangle([cx - t // 2, (h - arm) // 2 if not nordic else 0,
                        cx + t // 2, (h + arm) // 2 if not nordic else h], fill=colour)
        draw.rectangle([(w - arm) // 2 if not nordic else 0, h // 2 - t // 2,
                        (w + arm) // 2 if not nordic else w, h // 2 + t // 2], fill=colour)
    return paint


FLAGS: dict[str, Callable[[Image.Image], None]] = {
    "France": _stripes([_BLUE, _WHITE, _RED], vertical=True),
    "Italy": _stripes([_GREEN, _WHITE, _RED], vertical=True),
    "Germany": _stripes([_BLACK, _RED, _GOLD], vertical=False),
    "Ukraine": _stripes([_SKY, _YELLOW], vertical=False),
    "Poland": _stripes([_WHITE, _RED], vertical=False),
    "Japan": _disc(_WHITE, (188, 0, 45)),
    "Sweden": _cross((0, 106, 167), (254, 204, 0), nordic=True),
    "Switzerland": _cross((218, 41, 28), _WHITE, nordic=False),
}

PASSAGES = {
    "France": "France is a country in Western Europe. Its capital and largest city is Paris. "
              "Its flag is a vertical tricolour of blue, white and red.",
    "Italy": "Italy is a country in Southern Europe on a long peninsula. Its capital is Rome. "
             "The Italian flag is a vertical tricolour of green, white and red.",
    "Germany": "Germany is a country in Central Europe. Its capital is Berlin. The German flag "
               "has three horizontal bands of black, red and gold.",
    "Ukraine": "Ukraine is a country in Eastern Europe. Its capital is Kyiv. The flag has two "
               "horizontal bands, blue above yellow.",
    "Poland": "Poland is a country in Central Europe. Its capital is Warsaw. The Polish flag has "
              "two horizontal bands, white above red.",
    "Japan": "Japan is an island country in East Asia. Its capital is Tokyo. The flag is white "
             "with a red disc in the centre.",
    "Sweden": "Sweden is a Nordic country in Northern Europe. Its capital is Stockholm. The flag "
              "is blue with a yellow Nordic cross.",
    "Switzerland": "Switzerland is a landlocked country in Central Europe. Its federal city is "
                   "Bern. The flag is red with a white cross.",
}


@dataclass(frozen=True)
class SampleDocument:
    doc_id: str
    title: str
    text: str
    image: Image.Image


@dataclass(frozen=True)
class SampleQuery:
    label: str
    question: str
    image: Image.Image
    answer: str
    positive_id: str


def draw_flag(country: str, size: tuple[int, int] = (300, 200)) -> Image.Image:
    image = Image.new("RGB", size, _WHITE)
    FLAGS[country](image)
    return image


def sample_documents() -> list[SampleDocument]:
    return [SampleDocument(f"flag-{name.lower()}", name, PASSAGES[name], draw_flag(name))
            for name in FLAGS]


def sample_queries() -> list[SampleQuery]:
    """One query per flag: the flag drawn at another size, asking for the capital."""
    capitals = {"France": "Paris", "Italy": "Rome", "Germany": "Berlin", "Ukraine": "Kyiv",
                "Poland": "Warsaw", "Japan": "Tokyo", "Sweden": "Stockholm",
                "Switzerland": "Bern"}
    question = "What is the capital of the country with this flag?"
    return [SampleQuery(f"photo of the {name} flag", question, draw_flag(name, (240, 150)),
                        capitals[name], f"flag-{name.lower()}")
            for name in FLAGS]

"""Small helpers shared by tests (importable as ``tests.helpers``)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def random_image(seed: int, size: tuple[int, int] = (40, 52), mode: str = "RGB") -> Image.Image:
    """A seeded noise image of the given size (width, height) and PIL mode."""
    rng = np.random.default_rng(seed)
    array = (rng.random((size[1], size[0], 4)) * 255).astype(np.uint8)
    image = Image.fromarray(array, "RGBA")
    return image if mode == "RGBA" else image.convert(mode)

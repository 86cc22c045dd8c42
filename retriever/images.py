"""Turning whatever a user or a knowledge base hands us into a safe, upright RGB image.

Accepts PIL images, paths and raw bytes; any PIL mode (RGBA, LA, P with transparency, L, 1, CMYK,
16-bit and 32-bit grey, float) becomes 8-bit RGB. By default the alpha channel is dropped, as the
CLIP image processor of transformers 4.45 (the one the released ReT model ran with) does, so
features match the reference; ``background=`` composites onto a colour instead. High bit-depth
grey is scaled to 8 bits (Pillow alone would clip it). EXIF orientation is applied. Unreadable,
truncated and oversized ("decompression bomb") files raise :class:`ImageLoadError` naming the
file; so does a path that is not a regular file, saying what it is (a folder, a FIFO, a device),
without ever opening it: a FIFO would block and /dev/zero would never end.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError
from .fileio import path_kind

__all__ = ["ImageInput", "ImageLoadError", "DEFAULT_MAX_PIXELS", "load_image", "to_rgb"]

ImageInput = Image.Image | str | os.PathLike | bytes | bytearray | None

# Same default as Pillow's own guard; images above this are refused before decoding.
DEFAULT_MAX_PIXELS = 89_478_485


class ImageLoadError(UserError, ValueError):
    """An image that cannot be used; ``source`` names the file (or input) and ``reason`` why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot use image {source}: {reason}")
        self.source = source
        self.reason = reason


def _scale_to_uint8(image: Image.Image) -> Image.Image:
    """High bit-depth and float grey images, scaled (not clipped) to 8 bits."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = array.astype(np.float32) / 257.0
    elif image.mode == "I":
        peak = float(array.max()) if array.size else 0.0
        scaled = array.astype(np.float32) / (257.0 if peak > 255 else 1.0)
    else:  # "F"
        peak = float(array.max()) if array.size else 0.0
        scaled = array.astype(np.float32) * (255.0 if peak <= 1.0 else 1.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
    """Upright 8-bit RGB. Alpha is dropped (reference behaviour) unless ``background`` is given,
    in which case transparent pixels are composited onto that colour."""
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        pass  # broken EXIF: keep the pixels as stored
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _scale_to_uint8(image)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")  # palette transparency included; RGB values are kept as stored
    if background is None:
        return rgba.convert("RGB")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _describe(source: ImageInput, label: str | None) -> str:
    if label:
        return label
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(source)


def _open_regular_file(path: Path, name: str) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file; otherwise ImageLoadError saying what
    it is. Opened non-blocking and checked again on the open descriptor, so a file swapped for a
    FIFO in between cannot block either."""
    kind = path_kind(path)
    if kind != "file":
        raise ImageLoadError(name, "no such file" if kind == "missing" else
                             f"it is {kind}, not an image file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageLoadError(name, f"cannot open it ({exc.strerror})") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageLoadError(name, "it is not a regular file")
    return os.fdopen(fd, "rb")


def load_image(source: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               label: str | None = None, background: tuple[int, int, int] | None = None
               ) -> Image.Image:
    """Open ``source`` (PIL image, path or bytes) as RGB, refusing what cannot be decoded safely.

    ``label`` names the input in errors (e.g. "passage 12 image"); defaults to the path.
    """
    name = _describe(source, label)
    if isinstance(source, Image.Image):
        return to_rgb(source, background)
    if isinstance(source, (bytes, bytearray)):
        opener = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        opener = _open_regular_file(Path(source), name)
    else:
        raise ImageLoadError(name, f"expected a PIL image, a path or bytes, got "
                                   f"{type(source).__name__}")
    try:
        with opener, Image.open(opener) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(name, f"{width}x{height} = {width * height} pixels exceeds "
                                           f"the limit of {max_pixels} (possible decompression "
                                           "bomb)")
            image.load()
            rgb = to_rgb(image, background)
            return rgb.copy() if rgb is image else rgb  # the file-backed original gets closed
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(name, f"refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(name, "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(name, f"corrupt or truncated image ({exc})") from exc

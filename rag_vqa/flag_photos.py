"""Varied "photos" of the sample's flags, drawn from a seed: the training data of the sample
retriever and the fresh photos that test it.

A photo is a flag from :data:`rag_vqa.samples.FLAGS`, waved by a sinusoidal warp with shading,
placed in perspective (rotation, yaw, corner jitter, scale, position, sometimes running out of
the frame), often on a pole, over a background (sky, clouds, painted wall, brick, grass, wood,
...), then lit (brightness, contrast, colour cast, a shadow gradient), blurred, noised and
JPEG-compressed. :data:`TRAINING` and :data:`FRESH` are two styles with disjoint seed spaces;
FRESH also holds out backgrounds, sizes and parameter ranges training never sees, so a test on it
measures generalisation rather than memory. Flags are never mirrored: mirrored Mali is Guinea.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .samples import FLAGS, draw_flag

__all__ = ["PhotoStyle", "TRAINING", "FRESH", "BACKGROUNDS", "render_photo"]

Background = Callable[[np.random.Generator, int, int], np.ndarray]


def _gradient(top: np.ndarray, bottom: np.ndarray, h: int, w: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()


def _noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid, upsampled."""
    coarse = rng.uniform(-1, 1, (max(2, h // scale), max(2, w // scale))).astype(np.float32)
    image = Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize((w, h),
                                                                           Image.BICUBIC)
    return np.asarray(image, np.float32)[..., None] / 127.5 - 1


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    top = np.array([60, 120, 210]) + rng.uniform(-30, 30, 3)
    return _gradient(top, np.array([170, 200, 235]) + rng.uniform(-20, 20, 3), h, w)


def _clouds(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    sky = _sky(rng, h, w)
    cover = np.clip(_noise(rng, h, w, rng.integers(12, 40)) * 1.6 + rng.uniform(-0.6, 0.3), 0, 1)
    return sky * (1 - cover) + rng.uniform(200, 250) * cover


def _wall(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    colour = rng.uniform(60, 240, 3)
    return colour + 12 * _noise(rng, h, w, 6) + rng.normal(0, 4, (h, w, 1))


def _brick(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    mortar, brick = rng.uniform(150, 210), np.array([150, 60, 40]) + rng.uniform(-30, 30, 3)
    out = np.full((h, w, 3), mortar, np.float32)
    bh = int(rng.integers(8, 18))
    bw = bh * 2 + int(rng.integers(0, 8))
    for row, y in enumerate(range(0, h, bh)):
        offset = (bw // 2) * (row % 2)
        for x in range(-offset, w, bw):
            shade = rng.uniform(0.75, 1.15)
            out[y + 1:y + bh - 1, max(0, x + 1):max(0, x + bw - 1)] = brick * shade
    return out


def _grass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = _sky(rng, h, w)
    horizon = int(h * rng.uniform(0.45, 0.8))
    green = np.array([50, 130, 45]) + rng.uniform(-25, 25, 3)
    out[horizon:] = green + 25 * _noise(rng, h - horizon, w, 3)
    return out


def _wood(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array([140, 95, 55]) + rng.uniform(-30, 30, 3)
    grain = np.sin(np.arange(w) / rng.uniform(2, 6) + 3 * _noise(rng, h, w, 20)[..., 0])
    return base * (0.85 + 0.15 * grain[..., None])


def _sunset(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return _gradient(np.array([90, 60, 140]) + rng.uniform(-20, 20, 3),
                     np.array([250, 150, 70]) + rng.uniform(-20, 5, 3), h, w)


def _stone(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    grey = rng.uniform(90, 180)
    return grey + 35 * _noise(rng, h, w, 10) + 15 * _noise(rng, h, w, 3)


def _foliage(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    dark = np.array([30, 80, 35]) + rng.uniform(-15, 15, 3)
    return dark * (1 + 0.5 * _noise(rng, h, w, 5)) + 10 * _noise(rng, h, w, 2)


def _curtain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    colour = rng.uniform(80, 220, 3)
    folds = np.sin(np.arange(w) / rng.uniform(4, 9))[None, :, None]
    return np.broadcast_to(colour * (0.8 + 0.2 * folds), (h, w, 3)).copy()


BACKGROUNDS: dict[str, Background] = {
    "sky": _sky, "clouds": _clouds, "wall": _wall, "brick": _brick, "grass": _grass,
    "wood": _wood, "sunset": _sunset, "stone": _stone, "foliage": _foliage, "curtain": _curtain,
}


@dataclass(frozen=True)
class PhotoStyle:
    """Where each photo parameter is drawn from (ranges are inclusive, uniform)."""

    namespace: int                          # seeds of two styles never give the same photo
    backgrounds: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]      # photo (width, height) choices
    flag_width: tuple[float, float]         # flag width / photo width
    aspect: tuple[float, float]             # flag width / height
    rotation: tuple[float, float]           # degrees
    yaw: tuple[float, float]                # far edge shrink (seen at an angle)
    jitter: float                           # corner jitter, share of the flag's size
    wave: tuple[float, float]               # amplitude, share of the flag's height
    pole: float                             # probability of a pole
    out_of_frame: float                     # probability the flag runs out of the frame
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    cast: float                             # per-channel colour cast
    blur: tuple[float, float]               # Gaussian radius, pixels of a 160-wide photo
    noise: tuple[float, float]              # Gaussian sigma, 0-255
    jpeg: tuple[int, int]                   # quality


TRAINING = PhotoStyle(
    namespace=1, backgrounds=("sky", "clouds", "wall", "brick", "grass", "wood"),
    sizes=((160, 120), (144, 144), (176, 112), (120, 160)), flag_width=(0.4, 0.95),
    aspect=(1.3, 1.75), rotation=(-15, 15), yaw=(0.0, 0.35), jitter=0.06, wave=(0.0, 0.12),
    pole=0.6, out_of_frame=0.25, brightness=(0.65, 1.3), contrast=(0.75, 1.15), cast=0.12,
    blur=(0.0, 1.2), noise=(0.0, 8.0), jpeg=(35, 95))

FRESH = PhotoStyle(   # held-out backgrounds and sizes; other angles and lighting
    namespace=2, backgrounds=("sunset", "stone", "foliage", "curtain", "sky"),
    sizes=((320, 240), (256, 256), (400, 225), (240, 320)), flag_width=(0.45, 0.85),
    aspect=(1.35, 1.65), rotation=(-18, 18), yaw=(0.05, 0.3), jitter=0.05, wave=(0.02, 0.1),
    pole=0.5, out_of_frame=0.15, brightness=(0.7, 1.25), contrast=(0.8, 1.1), cast=0.1,
    blur=(0.2, 1.0), noise=(0.0, 6.0), jpeg=(45, 90))


def _wave(flag: np.ndarray, rng: np.random.Generator, amplitude: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """The flag waved: columns shifted by a sine growing away from the hoist, with shading.
    Returns the RGB array and its alpha mask (the waved outline)."""
    h, w, _ = flag.shape
    amp = amplitude * h
    pad = int(math.ceil(amp)) + 1
    phase, cycles = rng.uniform(0, 2 * math.pi), rng.uniform(1.0, 2.5)
    x = np.arange(w)
    arg = 2 * math.pi * cycles * x / w + phase
    shift = amp * np.sin(arg) * (x / w) ** 0.7
    ys = np.arange(h + 2 * pad)[:, None] - pad - shift[None, :]
    inside = (ys >= 0) & (ys <= h - 1)
    src = np.clip(np.rint(ys), 0, h - 1).astype(int)
    out = flag[src, x[None, :]].astype(np.float32)
    shade = 1 + (0.25 * amplitude / 0.12) * np.cos(arg) * (x / w) ** 0.7
    out *= shade[None, :, None]
    return np.clip(out, 0, 255), inside


def _perspective_coeffs(dest: np.ndarray, src: np.ndarray) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dest`` to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dest, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, float), src.reshape(8)).tolist()


def _draw(rng: np.random.Generator, low_high: tuple[float, float]) -> float:
    return float(rng.uniform(*low_high))


def render_photo(country: str, seed: int, style: PhotoStyle = TRAINING) -> Image.Image:
    """One photo of ``country``'s flag; the same (country, seed, style) always gives the same
    image."""
    index = list(FLAGS).index(country)
    rng = np.random.default_rng([style.namespace, index, seed])
    width, height = style.sizes[int(rng.integers(len(style.sizes)))]
    background = style.backgrounds[int(rng.integers(len(style.backgrounds)))]
    canvas = np.broadcast_to(BACKGROUNDS[background](rng, height, width),
                             (height, width, 3)).astype(np.float32)

    flag_w = int(width * _draw(rng, style.flag_width))
    flag_h = max(8, int(flag_w / _draw(rng, style.aspect)))
    flag, alpha = _wave(np.asarray(draw_flag(country, (flag_w * 2, flag_h * 2)), np.float32),
                        rng, _draw(rng, style.wave))
    fh, fw = alpha.shape
    # where the flag's corners land: rotated, seen at an angle, jittered, moved
    angle = math.radians(_draw(rng, style.rotation))
    scale = flag_w / fw
    half = np.array([[-fw, -fh], [fw, -fh], [fw, fh], [-fw, fh]], float) * scale / 2
    yaw = _draw(rng, style.yaw)
    far = 1 if rng.random() < 0.5 else 0  # which vertical edge is further away
    for corner in ((1, 2) if far else (0, 3)):
        half[corner, 1] *= 1 - yaw
        half[corner, 0] *= 1 - yaw / 3
    half += rng.uniform(-1, 1, (4, 2)) * style.jitter * np.array([flag_w, flag_h])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    quad = half @ rot.T
    spread = quad.max(0) - quad.min(0)
    slack = np.maximum(np.array([width, height]) - spread, 0) / 2
    margin = 0.25 * spread if rng.random() < style.out_of_frame else np.zeros(2)
    centre = np.array([width, height]) / 2 + rng.uniform(-1, 1, 2) * (slack + margin)
    quad += centre

    photo = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if rng.random() < style.pole:
        grey = int(rng.integers(70, 230))
        pole_w = max(2, int(width * rng.uniform(0.012, 0.025)))
        x0, y0 = quad[0] - [pole_w, 0]
        ImageDraw.Draw(photo).rectangle([x0, y0 - pole_w * 2, x0 + pole_w, height],
                                        fill=(grey, grey, int(grey * 0.95)))
    source = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], float)
    rgba = np.dstack([flag, alpha * 255.0]).astype(np.uint8)
    warped = Image.fromarray(rgba, "RGBA").transform(
        (width, height), Image.PERSPECTIVE, _perspective_coeffs(quad, source), Image.BILINEAR)
    photo.paste(warped, (0, 0), warped)

    array = np.asarray(photo, np.float32)
    cast = 1 + rng.uniform(-style.cast, style.cast, 3)
    shadow = np.linspace(1, 1 - rng.uniform(0, 0.35), width)[None, :, None]
    if rng.random() < 0.5:
        shadow = shadow[:, ::-1]
    mean = array.mean()
    array = (array - mean) * _draw(rng, style.contrast) + mean
    array = array * _draw(rng, style.brightness) * cast * shadow
    array += rng.normal(0, _draw(rng, style.noise), array.shape)
    photo = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    radius = _draw(rng, style.blur) * width / 160
    if radius > 0.05:
        photo = photo.filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=int(rng.integers(style.jpeg[0], style.jpeg[1] + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")

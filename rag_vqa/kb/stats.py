"""What is in a knowledge base: counts, text lengths and (optionally) which image files exist.

Image URLs count as present only once an explicit fetch step has put their pixels in the image
root's ``urls/`` layout; many E-VQA image URLs never have pixels, so missing images are counted,
never an error.
"""

from __future__ import annotations

import sqlite3
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .errors import UnsafeImagePath
from .imagerefs import resolve_image

__all__ = ["KBStats", "compute_stats"]


@dataclass
class KBStats:
    passages: int
    articles: int                   # distinct article ids
    with_text: int
    empty_text: int
    with_image: int                 # passages with an image reference
    url_images: int                 # ... of which http(s) URL keys
    path_images: int                # ... of which relative paths
    text_length: dict[str, float] | None   # characters: min, p50, p90, p99, max, mean
    images_checked: bool = False
    images_present: int | None = None
    images_missing: int | None = None
    images_refused: int | None = None      # references that resolve outside the root

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text_lengths(conn: sqlite3.Connection) -> dict[str, float] | None:
    lengths = array("q")
    cursor = conn.execute("SELECT length(text) FROM passages")
    while rows := cursor.fetchmany(100_000):
        lengths.extend(r[0] for r in rows)
    if not lengths:
        return None
    values = np.frombuffer(lengths, dtype=np.int64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"min": int(values.min()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": int(values.max()), "mean": float(values.mean())}


def compute_stats(conn: sqlite3.Connection, image_root: Path | None = None) -> KBStats:
    """Statistics of the passages table; image files are checked when ``image_root`` is given."""
    passages, articles, with_text, with_image, urls = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT article_id), COALESCE(SUM(text != ''), 0), "
        "COALESCE(SUM(image IS NOT NULL), 0), "
        "COALESCE(SUM(image LIKE 'http://%' OR image LIKE 'https://%'), 0) FROM passages"
    ).fetchone()
    stats = KBStats(passages=passages, articles=articles, with_text=with_text,
                    empty_text=passages - with_text, with_image=with_image, url_images=urls,
                    path_images=with_image - urls, text_length=_text_lengths(conn))
    if image_root is None:
        return stats
    present = missing = refused = 0
    cursor = conn.execute("SELECT image FROM passages WHERE image IS NOT NULL")
    with tqdm(total=with_image, unit="img", desc="checking images", disable=None) as bar:
        while rows := cursor.fetchmany(10_000):
            for (ref,) in rows:
                try:
                    found = resolve_image(ref, image_root)
                except UnsafeImagePath:
                    refused += 1
                    continue
                if found is None:
                    missing += 1
                else:
                    present += 1
            bar.update(len(rows))
    stats.images_checked = True
    stats.images_present, stats.images_missing, stats.images_refused = present, missing, refused
    return stats

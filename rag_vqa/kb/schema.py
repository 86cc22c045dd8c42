"""The passage store's file: the SQLite schema, how a Passage becomes a row and back, how the
file is opened (WAL while importing, read-only by URI otherwise) and how it is checked against
the knowledge base's manifest. ``store.PassageStore`` is the read / write API over it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retriever.fileio import DIGEST, file_digest

from .errors import KBStoreError
from .records import Passage

__all__ = ["INSERT", "SCHEMA", "SELECT", "connect", "decode_row", "encode_row", "verify_file"]

_FIELDS = "passage_id, article_id, url, title, section, text, image, language, extra"
SELECT = f"SELECT row, {_FIELDS} FROM passages"
INSERT = f"INSERT INTO passages(row, {_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS passages(
    row INTEGER PRIMARY KEY,          -- 0-based insertion order, dense
    passage_id TEXT NOT NULL UNIQUE,
    article_id TEXT, url TEXT, title TEXT, section TEXT,
    text TEXT NOT NULL, image TEXT, language TEXT,
    extra TEXT                        -- JSON object or NULL
);
CREATE INDEX IF NOT EXISTS passages_article_id ON passages(article_id);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
"""


def encode_row(row: int, p: Passage) -> tuple:
    """The INSERT values of passage ``p`` at ``row``."""
    extra = None if p.extra is None else json.dumps(p.extra, ensure_ascii=False, sort_keys=True,
                                                    default=str)
    return (row, p.passage_id, p.article_id, p.url, p.title, p.section, p.text, p.image,
            p.language, extra)


def decode_row(values: Sequence[Any]) -> tuple[int, Passage]:
    """``(row, passage)`` of one SELECT result."""
    row, pid, article_id, url, title, section, text, image, language, extra = values
    return row, Passage(passage_id=pid, text=text, title=title, section=section,
                        article_id=article_id, url=url, image=image, language=language,
                        extra=None if extra is None else json.loads(extra))


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               check_same_thread=False, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def verify_file(path: Path, entry: dict[str, Any], level: str) -> None:
    """KBStoreError unless ``path`` matches its manifest ``entry``: its size, and with ``level``
    "full" its digest too."""
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise KBStoreError(f"knowledge base file {path} has changed since the import ({size} "
                           f"bytes, the manifest says {entry['bytes']}); re-import it")
    if level == "full" and file_digest(path) != entry[DIGEST]:
        raise KBStoreError(f"knowledge base file {path} has changed since the import (its "
                           "content differs from the recorded digest: edited or corrupt); "
                           "re-import it")

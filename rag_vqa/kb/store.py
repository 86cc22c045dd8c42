"""The passage store: one SQLite file (its schema and checks: ``schema``), rows numbered densely
from 0 in insertion order.

The row number is the position of a passage's vectors in the index, so it never changes after
insertion. Writes go through transactions (batched ``executemany``; WAL while importing); a
finished KB is checkpointed back to a single self-contained file (journal mode DELETE) so that its
sha256 in the manifest is meaningful and it can be read from read-only storage.

Reading is safe from several threads (one lock per store) and processes: each process opens its
own read-only connection, and a store handed to a forked or spawned DataLoader worker reconnects
there by itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

from retriever.fileio import DIGEST, file_digest

from . import imagerefs
from .errors import DuplicatePassageError, KBStoreError
from .manifest import (
    KB_FORMAT_VERSION,
    KB_KIND,
    MANIFEST_NAME,
    SQLITE_NAME,
    read_manifest,
    sqlite_entry,
    write_sealed_manifest,
)
from .records import Passage
from .schema import INSERT, SCHEMA, SELECT, connect, decode_row, encode_row, verify_file
from .stats import KBStats, compute_stats

__all__ = ["PassageStore", "BATCH_ROWS"]

BATCH_ROWS = 5000
_QUERY_CHUNK = 500  # ids per "IN (...)" query


class PassageStore:
    """Passages of one knowledge-base folder (``manifest.json`` + ``passages.sqlite``)."""

    def __init__(self, folder: Path, *, readonly: bool, manifest: dict[str, Any] | None,
                 image_root: str | Path | None = None) -> None:
        self.folder = folder
        self.readonly = readonly
        self.manifest = manifest
        self._image_root_override = None if image_root is None else Path(image_root)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | Path) -> PassageStore:
        """A new, empty, writable store in ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / SQLITE_NAME).exists() or (folder / MANIFEST_NAME).exists():
            raise KBStoreError(f"{folder} already holds a knowledge base (or an unfinished "
                               "import); choose a new folder")
        store = cls(folder, readonly=False, manifest=None)._with_tables()
        store.set_meta({"format_version": KB_FORMAT_VERSION})
        return store

    @classmethod
    def open(cls, folder: str | Path, readonly: bool = True,
             image_root: str | Path | None = None, verify: str = "full") -> PassageStore:
        """A finished knowledge base; ``image_root`` overrides the one in its manifest.

        ``verify``: "full" (default) checks the digest of the passages file (about 0.3 s per GB
        from the page cache), "size" its size only, "none" only the manifest's own seal."""
        if verify not in ("full", "size", "none"):
            raise KBStoreError(f"verify must be full, size or none, got {verify!r}")
        folder = Path(folder)
        manifest = read_manifest(folder)
        path = folder / SQLITE_NAME
        if not path.is_file():
            raise KBStoreError(f"{folder} has a manifest but no {SQLITE_NAME}")
        if readonly and verify != "none":
            verify_file(path, sqlite_entry(manifest), verify)
        return cls(folder, readonly=readonly, manifest=manifest, image_root=image_root)

    @classmethod
    def open_unfinished(cls, folder: str | Path) -> PassageStore:
        """The writable store of an unfinished import (for the importer's resume)."""
        folder = Path(folder)
        if not (folder / SQLITE_NAME).is_file():
            raise KBStoreError(f"no {SQLITE_NAME} in {folder}")
        return cls(folder, readonly=False, manifest=None)._with_tables()

    def _with_tables(self) -> PassageStore:
        """This (writable) store with its tables created if missing."""
        with self._lock:
            self._db().executescript(SCHEMA)
        return self

    def _connect(self) -> None:
        path = self.folder / SQLITE_NAME
        try:
            self._conn = connect(path, self.readonly)
            self._pid = os.getpid()
            self._next_row = self._conn.execute(
                "SELECT COALESCE(MAX(row) + 1, 0) FROM passages").fetchone()[0] \
                if self._has_table() else 0
        except sqlite3.DatabaseError as exc:
            raise KBStoreError(f"cannot open {path}: {exc}") from exc

    def _has_table(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                  "name='passages'").fetchone() is not None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise KBStoreError(f"the store {self.folder} is closed")
        if self._pid != os.getpid():  # inherited through fork: never share a connection
            if not self.readonly:
                raise KBStoreError("a writable store cannot be used in a forked process")
            self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> PassageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for DataLoader workers (read-only stores): the connection is reopened."""
        if not self.readonly:
            raise TypeError("only a read-only PassageStore can be sent to another process")
        return {"folder": self.folder, "manifest": self.manifest,
                "image_root": self._image_root_override}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], readonly=True, manifest=state["manifest"],
                      image_root=state["image_root"])

    # -- writing --------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise KBStoreError(f"the knowledge base {self.folder} is open read-only")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: everything inside commits together or not at all."""
        self._check_writable()
        with self._lock:
            db = self._db()
            saved = self._next_row
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._next_row = saved
                raise

    def insert_groups(self, groups: Sequence[Sequence[Passage]]) -> list[tuple[int, str]]:
        """Insert groups of passages (all or nothing per group) inside :meth:`transaction`.

        Returns ``(group index, passage id)`` for groups refused because one of their ids is
        already stored (or repeated); the others are inserted with the next row numbers.
        """
        db = self._db()
        if not db.in_transaction:
            raise KBStoreError("insert_groups must run inside store.transaction()")
        rows, row = [], self._next_row
        for group in groups:
            for passage in group:
                rows.append(encode_row(row, passage))
                row += 1
        db.execute("SAVEPOINT batch")
        try:
            db.executemany(INSERT, rows)
            db.execute("RELEASE batch")
            self._next_row = row
            return []
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO batch")
            db.execute("RELEASE batch")
        refused = []  # slow path: find the offending groups one by one
        for index, group in enumerate(groups):
            seen: set[str] = set()
            duplicate = None
            for passage in group:
                pid = passage.passage_id
                if pid in seen or db.execute("SELECT 1 FROM passages WHERE passage_id = ?",
                                             (pid,)).fetchone():
                    duplicate = pid
                    break
                seen.add(pid)
            if duplicate is not None:
                refused.append((index, duplicate))
                continue
            db.executemany(INSERT, [encode_row(self._next_row + i, p) for i, p in enumerate(group)])
            self._next_row += len(group)
        return refused

    def add_many(self, passages: Iterable[Passage]) -> int:
        """Append passages in transactions of :data:`BATCH_ROWS`; a duplicate id raises
        :class:`DuplicatePassageError` (its batch is rolled back, earlier batches stay)."""
        total = 0
        iterator = iter(passages)
        while batch := list(islice(iterator, BATCH_ROWS)):
            with self.transaction():
                refused = self.insert_groups([[p] for p in batch])
                if refused:
                    raise DuplicatePassageError(refused[0][1])
            total += len(batch)
        return total

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Store JSON values in the meta table (inside the current transaction, if any)."""
        self._check_writable()
        with self._lock:
            self._db().executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in values.items()])

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            found = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if found is None else json.loads(found[0])

    def finalize(self, info: Mapping[str, Any], stats: KBStats | None = None) -> dict[str, Any]:
        """Seal the store: checkpoint into one file, write the complete manifest (``info`` plus
        counts, size and sha256 of the SQLite file) atomically, and close. Returns the manifest.
        ``stats`` saves recomputing them when the caller already has them."""
        with self._lock:
            db = self._db()
            if db.in_transaction:
                raise KBStoreError("finalize() inside a transaction")
            counts = (stats or self.stats()).to_dict()
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")
            self.close()
        path = self.folder / SQLITE_NAME
        manifest = {"kind": KB_KIND, "format_version": KB_FORMAT_VERSION, "complete": True,
                    **info, "counts": counts,
                    "files": {SQLITE_NAME: {"bytes": path.stat().st_size,
                                            DIGEST: file_digest(path)}},
                    "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.manifest = write_sealed_manifest(self.folder, manifest)
        return self.manifest

    @property
    def digest(self) -> str | None:
        """The recorded digest of the passages file (None for an unfinished store)."""
        entry = ((self.manifest or {}).get("files") or {}).get(SQLITE_NAME)
        return f"{DIGEST}:{entry[DIGEST]}" if entry else None

    def verify(self, level: str = "full") -> None:
        """Check ``passages.sqlite`` against the manifest; KBStoreError names what differs."""
        verify_file(self.folder / SQLITE_NAME, sqlite_entry(self.manifest or {}), level)

    def check_integrity(self) -> None:
        """SQLite's own consistency check of every page and index (slow on huge stores)."""
        problems = [row[0] for row in self._query("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise KBStoreError(f"{self.folder / SQLITE_NAME} fails SQLite's integrity check: "
                               + "; ".join(problems[:5]))

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._next_row

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:  # opened unverified, and damaged
                raise KBStoreError(f"cannot read {self.folder / SQLITE_NAME}: {exc} (a corrupt "
                                   "file? `rag-vqa kb stats KB --verify` checks it)") from exc

    def get(self, passage_id: str) -> Passage:
        found = self._query(f"{SELECT} WHERE passage_id = ?", (passage_id,))
        if not found:
            raise KeyError(f"passage id {passage_id!r} is not in the knowledge base {self.folder}")
        return decode_row(found[0])[1]

    def get_many(self, passage_ids: Sequence[str]) -> list[Passage]:
        """Passages in the order asked (repeats allowed); a missing id raises KeyError."""
        found: dict[str, Passage] = {}
        unique = list(dict.fromkeys(passage_ids))
        for i in range(0, len(unique), _QUERY_CHUNK):
            part = unique[i:i + _QUERY_CHUNK]
            marks = ",".join("?" * len(part))
            for values in self._query(f"{SELECT} WHERE passage_id IN ({marks})", part):
                found[values[1]] = decode_row(values)[1]
        missing = [pid for pid in unique if pid not in found]
        if missing:
            raise KeyError(f"{len(missing)} passage id(s) not in the knowledge base {self.folder}: "
                           f"{', '.join(map(repr, missing[:5]))}")
        return [found[pid] for pid in passage_ids]

    def get_rows(self, rows: Sequence[int]) -> list[Passage]:
        """Passages by 0-based row (the index's numbering), in the order asked."""
        found: dict[int, Passage] = {}
        unique = list(dict.fromkeys(int(r) for r in rows))
        bad = [r for r in unique if not 0 <= r < len(self)]
        if bad:
            raise IndexError(f"row {bad[0]} is out of range for a knowledge base of {len(self)} "
                             "passages")
        for i in range(0, len(unique), _QUERY_CHUNK):
            part = unique[i:i + _QUERY_CHUNK]
            marks = ",".join("?" * len(part))
            for values in self._query(f"{SELECT} WHERE row IN ({marks})", part):
                row, passage = decode_row(values)
                found[row] = passage
        return [found[int(r)] for r in rows]

    def ids(self) -> list[str]:
        """Every passage id in row order (the index's numbering), without decoding passages."""
        return [row[0] for row in self._query("SELECT passage_id FROM passages ORDER BY row")]

    def row_of(self, passage_id: str) -> int:
        found = self._query("SELECT row FROM passages WHERE passage_id = ?", (passage_id,))
        if not found:
            raise KeyError(f"passage id {passage_id!r} is not in the knowledge base {self.folder}")
        return found[0][0]

    def iter_rows(self, start: int = 0, stop: int | None = None,
                  batch_size: int = 1000) -> Iterator[tuple[int, Passage]]:
        """``(row, passage)`` for rows in ``[start, stop)``, fetched ``batch_size`` at a time."""
        stop = len(self) if stop is None else min(stop, len(self))
        position = max(0, start)
        while position < stop:
            found = self._query(f"{SELECT} WHERE row >= ? AND row < ? ORDER BY row LIMIT ?",
                                (position, stop, batch_size))
            if not found:
                return
            for values in found:
                yield decode_row(values)
            position = found[-1][0] + 1

    def passages_of_article(self, article_id: str) -> list[Passage]:
        return [decode_row(v)[1] for v in
                self._query(f"{SELECT} WHERE article_id = ? ORDER BY row", (article_id,))]

    # -- images and statistics ------------------------------------------------------------------

    @property
    def image_root(self) -> Path | None:
        if self._image_root_override is not None:
            return self._image_root_override
        root = (self.manifest or {}).get("image_root")
        return None if root is None else Path(root)

    def resolve_image(self, passage: Passage) -> Path | None:
        """The passage's image file; None without an image, an image root or the file."""
        return imagerefs.resolve_image(passage.image, self.image_root)

    def stats(self, image_root: str | Path | None = None, check_images: bool = False) -> KBStats:
        """Counts and text lengths; with ``check_images`` also which image files exist."""
        root = Path(image_root) if image_root is not None else self.image_root
        if check_images and root is None:
            raise KBStoreError(f"{self.folder} has no image root; give one to check images")
        with self._lock:
            return compute_stats(self._db(), root if check_images else None)

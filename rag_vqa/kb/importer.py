"""Importing a published knowledge base into a KB folder, resumably.

Passages are committed in batches, each in ONE transaction together with the number of source
records done and the bad-record counters. A process killed at any moment (even ``kill -9``) leaves
the last committed batch; running the same import again skips exactly the committed records and
ends with the same store as an uninterrupted run. The resume is refused when the source or the
parameters that shape the passages differ. ``manifest.json`` with ``"complete": true`` is written
atomically at the very end; until then the folder is an unfinished import.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from retriever.fileio import path_kind

from .errors import (
    DuplicatePassageError,
    KBError,
    KBFormatError,
    KBStoreError,
    ResumeMismatchError,
    UnsafeImagePath,
)
from .imagerefs import check_image_ref
from .manifest import KB_FORMAT_VERSION, KB_KIND, MANIFEST_NAME, SQLITE_NAME, write_json_atomic
from .readers import ARTICLE_FORMATS, SourceRecord, check_format, iter_records, source_files
from .records import Passage
from .sources import fingerprint
from .splitting import PassageSplitter
from .store import BATCH_ROWS, PassageStore

__all__ = ["ImportReport", "import_kb", "MAX_BAD_EXAMPLES"]

logger = logging.getLogger(__name__)

MAX_BAD_EXAMPLES = 10
_IMAGE_FIELD = {"ret-jsonl": "passage_image_path", "m2kr": "image",
                "infoseek-wiki": "wikipedia_image_url", "evqa-kb": "image_urls"}
_KB_FILES = (MANIFEST_NAME, SQLITE_NAME, f"{SQLITE_NAME}-wal", f"{SQLITE_NAME}-shm",
             f"{SQLITE_NAME}-journal")


@dataclass
class ImportReport:
    """What an import did. Counts cover the whole import, including runs it resumed."""

    format: str
    source: str
    out: str
    records_read: int = 0
    passages_written: int = 0
    articles: int = 0
    bad_records: int = 0
    bad_examples: list[dict[str, str]] = field(default_factory=list)
    refused_image_paths: int = 0
    seconds: float = 0.0            # this run only
    resumed_from: int = 0           # records already committed when this run started

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Counters:
    """Bad-record bookkeeping, persisted with every batch so a resume continues it exactly."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.bad_records = int(saved.get("bad_records", 0))
        self.refused_image_paths = int(saved.get("refused_image_paths", 0))
        self.examples: list[dict[str, str]] = list(saved.get("bad_examples", []))

    def example(self, location: str, reason: str) -> None:
        if len(self.examples) < MAX_BAD_EXAMPLES:  # kept in the manifest: must be valid UTF-8
            self.examples.append({k: v.encode("utf-8", "backslashreplace").decode("utf-8")
                                  for k, v in (("location", location), ("reason", reason))})

    def to_dict(self) -> dict[str, Any]:
        return {"bad_records": self.bad_records, "refused_image_paths": self.refused_image_paths,
                "bad_examples": self.examples}


def _folder_state(out: Path) -> str:
    """'new', 'complete', 'unfinished' or 'foreign' (a non-empty folder that is not a KB)."""
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("complete") is True:
                return "complete"
        except (OSError, ValueError, AttributeError):
            pass
        return "unfinished"
    if (out / SQLITE_NAME).exists():
        return "unfinished"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return "foreign"
    return "new"


def _remove_kb_files(out: Path) -> None:
    for name in _KB_FILES:
        (out / name).unlink(missing_ok=True)


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    return "; ".join(f"{k}: was {json.dumps(saved.get(k))}, now {json.dumps(wanted.get(k))}"
                     for k in keys)


def _open_store(out: Path, params: dict[str, Any], resume: bool, limit: int | None,
                describe: dict[str, Any]) -> tuple[PassageStore, int, _Counters]:
    """The store to write into, the records already done and the counters so far. A new store
    gets a provisional manifest (``describe`` + ``"complete": false``) for people looking in."""
    state = _folder_state(out)
    if state == "foreign":
        raise KBStoreError(f"{out} exists and is not a knowledge-base folder; choose a new --out")
    if state == "complete":
        if resume:
            raise KBStoreError(f"{out} already holds a complete knowledge base; choose a new "
                               "--out, or pass --no-resume to rebuild it")
        _remove_kb_files(out)
    elif state == "unfinished":
        if not resume:
            _remove_kb_files(out)
        elif (out / SQLITE_NAME).is_file():
            store = PassageStore.open_unfinished(out)
            saved = store.get_meta("import_params")
            if saved is not None:
                if saved != params:
                    store.close()
                    raise ResumeMismatchError(
                        f"{out} holds an unfinished import of a different source or with other "
                        f"parameters ({_differences(saved, params)}); choose a new --out, or pass "
                        "--no-resume to start it over")
                done = int(store.get_meta("records_done", 0))
                if limit is not None and done > limit:
                    store.close()
                    raise ResumeMismatchError(f"{out} already holds {done} records, more than "
                                              f"--limit {limit}; choose a new --out or --no-resume")
                return store, done, _Counters(store.get_meta("counters"))
            store.close()  # killed before anything was committed: start over
            _remove_kb_files(out)
        else:
            _remove_kb_files(out)
    store = PassageStore.create(out)
    counters = _Counters()
    with store.transaction():
        store.set_meta({"import_params": params, "records_done": 0,
                        "counters": counters.to_dict()})
    write_json_atomic(out / MANIFEST_NAME, {
        "kind": KB_KIND, "format_version": KB_FORMAT_VERSION, "complete": False, **describe,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return store, 0, counters


def _check_images(fmt: str, record: SourceRecord, counters: _Counters,
                  skip_bad: bool) -> list[Passage]:
    """The record's passages with image references normalised; unsafe ones refused."""
    checked = []
    for passage in record.passages:
        if passage.image is not None:
            try:
                ref = check_image_ref(passage.image)
            except UnsafeImagePath as exc:
                if not skip_bad:
                    raise KBFormatError(record.path, record.location, _IMAGE_FIELD[fmt],
                                        str(exc)) from exc
                counters.refused_image_paths += 1
                counters.example(f"{Path(record.path).name}, {record.location}", str(exc))
                ref = None
            if ref != passage.image:
                passage = dataclasses.replace(passage, image=ref)
        checked.append(passage)
    return checked


def import_kb(format: str, source: str | Path, out_folder: str | Path,
              image_root: str | Path | None = None, *, skip_bad: bool = False,
              limit: int | None = None, splitter: PassageSplitter | None = None,
              resume: bool = True, batch_size: int = BATCH_ROWS,
              progress: bool | None = None) -> ImportReport:
    """Import ``source`` (a file, or a shard folder for passage formats) of ``format`` into the
    KB folder ``out_folder``.

    ``skip_bad`` skips and counts malformed records instead of stopping at the first; ``limit``
    imports only the first N records; ``splitter`` (article formats only) defaults to
    ``PassageSplitter()``; ``resume`` continues an unfinished import of the same source and
    parameters (False starts over). ``progress`` None shows a bar only on a terminal.
    """
    started = time.perf_counter()
    fmt = check_format(format)
    files = source_files(fmt, source)
    if limit is not None and limit < 0:
        raise KBError(f"limit must be zero or more, got {limit}")
    if batch_size < 1:
        raise KBError(f"batch_size must be positive, got {batch_size}")
    root = None
    if image_root is not None:
        root = Path(image_root).resolve()
        kind = path_kind(root)
        if kind != "a folder":
            raise KBError(f"image root not found: {image_root}" if kind == "missing" else
                          f"image root {image_root} is {'a file' if kind == 'file' else kind}"
                          ", not a folder")
    if fmt in ARTICLE_FORMATS:
        splitter = splitter or PassageSplitter()
    elif splitter is not None:
        logger.info("%s passages are stored whole; the splitter is not used", fmt)
        splitter = None
    params = json.loads(json.dumps({
        "format": fmt, "source": fingerprint(files),
        "splitter": splitter.config() if splitter is not None else None}))
    out = Path(out_folder)
    source_path = str(Path(source).resolve())
    describe = {"format": fmt, "image_root": None if root is None else str(root),
                "source": {"path": source_path, "files": params["source"]},
                "params": {"splitter": params["splitter"], "skip_bad": skip_bad, "limit": limit}}
    store, done, counters = _open_store(out, params, resume, limit, describe)
    if done:
        logger.info("resuming the import into %s after %d committed records", out, done)
    report = ImportReport(format=fmt, source=source_path, out=str(out), resumed_from=done)
    try:
        records_done = _run(store, fmt, source, splitter, done, counters, skip_bad=skip_bad,
                            limit=limit, batch_size=batch_size, progress=progress)
        stats = store.stats()
        report.records_read = records_done
        report.passages_written = stats.passages
        report.articles = stats.articles
        report.bad_records = counters.bad_records
        report.bad_examples = counters.examples
        report.refused_image_paths = counters.refused_image_paths
        report.seconds = round(time.perf_counter() - started, 3)
        store.finalize({**describe, "report": report.to_dict()}, stats=stats)
    finally:
        store.close()
    if counters.bad_records or counters.refused_image_paths:
        logger.warning("%d malformed records skipped, %d image paths refused (see the report)",
                       counters.bad_records, counters.refused_image_paths)
    return report


def _run(store: PassageStore, fmt: str, source: str | Path, splitter: PassageSplitter | None,
         done: int, counters: _Counters, *, skip_bad: bool, limit: int | None, batch_size: int,
         progress: bool | None) -> int:
    """The import loop; returns the number of records done (committed)."""
    pending: list[list[Passage]] = []
    locations: list[str] = []
    pending_rows = 0
    records_done = done

    def commit() -> None:
        nonlocal pending, locations, pending_rows
        with store.transaction():
            for index, pid in store.insert_groups(pending):
                if not skip_bad:
                    raise DuplicatePassageError(pid, locations[index])
                counters.bad_records += 1
                counters.example(locations[index], f"duplicate passage_id {pid!r}")
            store.set_meta({"records_done": records_done, "counters": counters.to_dict()})
        pending, locations, pending_rows = [], [], 0

    records = iter_records(fmt, source, splitter=splitter, start=done)
    disable = None if progress is None else not progress
    name = Path(source).name
    with tqdm(initial=done, total=limit, unit="rec", desc=f"importing {name}", disable=disable,
              dynamic_ncols=True) as bar:
        try:
            while limit is None or records_done < limit:
                record = next(records, None)
                if record is None:
                    break
                if record.error is not None:
                    if not skip_bad:
                        raise record.error
                    counters.bad_records += 1
                    counters.example(record.error.short_location,
                                     f"{record.error.field}: {record.error.reason}"
                                     if record.error.field else record.error.reason)
                else:
                    passages = _check_images(fmt, record, counters, skip_bad)
                    pending.append(passages)
                    locations.append(f"{Path(record.path).name}, {record.location}")
                    pending_rows += len(passages)
                records_done = record.index + 1
                bar.update(1)
                if pending_rows >= batch_size:
                    commit()
                    bar.set_postfix(passages=len(store), refresh=False)
            commit()
        finally:
            records.close()
    return records_done

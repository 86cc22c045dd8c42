"""The data folders of an index: each build, overwrite or merge writes a new ``data-<stamp>``
(or ``parts-<stamp>``) folder beside the current one and commits by swapping the manifest, so
an interrupted job leaves the old index whole. These helpers name the folders and clear what a
job that never committed left behind."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import uuid
from pathlib import Path

from .storage import MANIFEST, IndexFormatError, check_data_name

__all__ = ["clear_stale_data", "legacy_files", "new_data_name", "now"]

logger = logging.getLogger(__name__)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_data_name(prefix: str = "data") -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:8]}"


def legacy_files(folder: Path) -> list[str]:
    """Files an unreadable (older or damaged) manifest lists at the top level of ``folder``: they
    go once the new index has replaced it."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    if not isinstance(files, dict):
        return []
    keep = []
    for name in files:
        try:
            keep.append(check_data_name(name, "file"))
        except IndexFormatError:
            continue
    return [name for name in keep if name != MANIFEST and (folder / name).is_file()]


def clear_stale_data(folder: Path, keep: str | None) -> None:
    """Data (and parts) folders of builds and merges that never committed (killed before their
    manifest), or of the index a new one replaced."""
    for stale in [*folder.glob("data-*"), *folder.glob("parts-*")]:
        if stale.is_dir() and stale.name != keep:
            logger.info("removing %s, left by an interrupted build", stale)
            shutil.rmtree(stale, ignore_errors=True)

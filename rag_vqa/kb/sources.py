"""Low-level streaming over source files: (gzip) JSONL lines, parquet rows, shard folders.

Everything here streams with bounded memory and numbers records the same way on every run (a
record is a non-empty JSONL line or a parquet row, counted across shards in sorted name order), so
an interrupted import can skip exactly the records it already committed. Skipped records are
counted without being decoded. Each record is decoded by the project's careful JSON rules
(:mod:`retriever.fileio`: a byte-order mark is accepted; deep nesting, invalid UTF-8, lone
surrogates and numbers too long to read are that record's error, never the whole file's).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

from retriever.fileio import JSONRecordError, check_json_value, loads_record, path_kind, sha256_hex

from .errors import KBFormatError, KBSourceError

__all__ = ["RawRecord", "open_binary", "open_text", "iter_jsonl", "iter_parquet", "list_files",
           "fingerprint", "JSONL_SUFFIXES", "PARQUET_SUFFIXES"]

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
_GZIP_MAGIC = b"\x1f\x8b"
_HEAD_BYTES = 1 << 20  # hashed for the resume fingerprint
_PARQUET_BATCH = 1024

# (0-based record number within the file, location such as "line 12", decoded object or None,
#  the record's error or None)
RawRecord = tuple[int, str, Any, "JSONRecordError | None"]


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, transparently gunzipped (detected by content, not by name)."""
    handle = open(path, "rb")
    if handle.read(2) == _GZIP_MAGIC:
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def open_text(path: Path) -> IO[str]:
    """UTF-8 text of the (possibly gzipped) file; a leading byte-order mark is dropped. Bytes
    that are not UTF-8 become lone surrogates (``surrogateescape``), so that the one record
    holding them is refused by :func:`~retriever.fileio.check_json_value`, not the file."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", errors="surrogateescape")


def _stream_error(path: Path, location: str, exc: BaseException) -> KBFormatError:
    return KBFormatError(path, location, None, f"corrupt or truncated file ({type(exc).__name__}: "
                                               f"{exc}); the source must be re-downloaded")


def iter_jsonl(path: Path, skip: int = 0) -> Generator[RawRecord, None, int]:
    """JSON objects of a (gzip) JSONL file, one per non-empty line; returns the record count.

    A line that is not a JSON object is yielded with an error message (recoverable); a broken
    gzip stream raises :class:`KBFormatError` (nothing after it can be read).
    """
    count = 0
    line_no = 0
    with open_binary(path) as handle:
        lines = iter(handle)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return count
            except (OSError, EOFError, zlib.error) as exc:
                raise _stream_error(path, f"line {line_no + 1}", exc) from exc
            line_no += 1
            if not raw.strip():
                continue
            count += 1
            if count <= skip:
                continue
            location = f"line {line_no}"
            try:
                value = check_json_value(loads_record(raw))
            except JSONRecordError as exc:
                yield count - 1, location, None, exc
                continue
            if not isinstance(value, dict):
                yield count - 1, location, None, JSONRecordError(
                    f"expected a JSON object, got {type(value).__name__}")
                continue
            yield count - 1, location, value, None


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise KBSourceError("reading parquet files needs pyarrow: pip install pyarrow") from exc
    return pq


def iter_parquet(path: Path, skip: int = 0) -> Generator[RawRecord, None, int]:
    """Rows of a parquet file as dicts, batch by batch; returns the row count. Whole row groups
    before ``skip`` are not read at all."""
    pq = _pyarrow_parquet()
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001
        raise KBFormatError(path, "file metadata", None, f"not a readable parquet file ({exc})") \
            from exc
    meta = parquet.metadata
    groups, position, index = [], 0, 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if position + rows > skip:
            if not groups:
                index = position  # rows before the first group read
            groups.append(g)
        position += rows
    if groups:
        try:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=groups):
                for row in batch.to_pylist():
                    index += 1
                    if index > skip:
                        try:
                            value, problem = check_json_value(row), None
                        except JSONRecordError as exc:
                            value, problem = None, exc
                        yield index - 1, f"row {index}", value, problem
        except Exception as exc:  # noqa: BLE001
            raise _stream_error(path, f"row {index + 1}", exc) from exc
    return meta.num_rows


def list_files(source: Path, suffixes: tuple[str, ...], allow_dir: bool) -> list[Path]:
    """The file itself, or a folder's files with one of ``suffixes`` in sorted name order."""
    kind = path_kind(source)
    if kind == "missing":
        raise KBSourceError(f"source not found: {source}")
    if kind == "file":
        return [source]
    if kind != "a folder":  # never opened: a FIFO would block, /dev/zero never ends
        raise KBSourceError(f"source {source} is {kind}, not a file or a folder")
    if not allow_dir:
        raise KBSourceError(f"{source} is a folder; this format reads a single file")
    files = sorted((p for p in source.iterdir()
                    if p.name.lower().endswith(suffixes) and path_kind(p) == "file"),
                   key=lambda p: p.name)
    if not files:
        raise KBSourceError(f"no {'/'.join(suffixes)} files in folder {source}")
    return files


def fingerprint(files: list[Path]) -> list[dict[str, Any]]:
    """Name, size and sha256 of the first MiB of each file: cheap, yet catches a different or a
    re-downloaded source when resuming."""
    prints = []
    for path in files:
        with open(path, "rb") as handle:
            head = sha256_hex(handle.read(_HEAD_BYTES))
        prints.append({"name": path.name, "size": path.stat().st_size, "head_sha256": head})
    return prints

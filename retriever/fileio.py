"""How this project writes and reads its own files, in one place.

- Atomic writes (temporary file in the same folder, fsync, rename, fsync of the folder): a reader
  sees the old file or the complete new one, never half of either, even after ``kill -9``. Text,
  JSON and bytes; a file filled over time (:func:`temp_beside` then :func:`publish`); a whole
  folder staged beside its place (:func:`replace_folder`). Durable (fsynced) unless told not.
- Fast content digests (xxh3-128 over the file's bytes, ~20 GB/s): cheap enough to verify every
  array of a million-document index each time it is loaded; sha256 (:func:`sha256_hex`) where a
  format recorded it before.
- Sealed manifests: a JSON manifest carries the digest of its own canonical form, so an edit to any
  field (``method``, ``counts``, a file's digest) is detected like a flipped bit in an array.
- Careful JSON records: user files may hold a byte-order mark, nesting deep enough to crash the
  parser, or lone surrogate escapes ("\\ud800") that cannot be written back as UTF-8. They become a
  :class:`JSONRecordError` naming the field, so one bad record is skipped or reported, never fatal.
- What a path is, when it is not a regular file (a folder, a FIFO, /dev/zero ...), for messages.

The lowest layer of the project: ``retriever``, ``rag_vqa``, ``generator`` and ``eval`` use it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash

from .errors import UserError

__all__ = [
    "DIGEST", "CorruptFileError", "JSONRecordError", "atomic_write", "atomic_write_bytes",
    "atomic_write_text", "atomic_write_json", "temp_beside", "publish", "replace_folder",
    "file_digest", "bytes_digest", "sha256_hex", "canonical_json",
    "seal", "check_seal", "SEAL_KEY", "loads_record", "path_kind", "require_file",
    "read_jsonl_records", "check_json_value", "loads_json", "MAX_JSON_DEPTH", "TOO_LONG_NUMBER",
]

DIGEST = "xxh3_128"          # the algorithm name recorded next to every digest
SEAL_KEY = "manifest_digest"  # the key a sealed manifest keeps its own digest under
_CHUNK = 64 << 20


class CorruptFileError(UserError, ValueError):
    """A file of ours whose content no longer matches what was recorded when it was written."""


class JSONRecordError(UserError, ValueError):
    """One JSON record that cannot be used; ``field`` is the offending key path (or None)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"field {field!r}: {reason}" if field else reason)


# -- atomic writes -------------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_beside(path: str | os.PathLike) -> Path:
    """A new empty temporary file in ``path``'s folder (same filesystem, so a rename is atomic),
    hidden and ending in ``.tmp`` so that cleaners and copies skip it."""
    final = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, durable: bool = True) -> Path:
    """Rename the complete file ``tmp`` (from :func:`temp_beside`) to ``path``.

    ``durable`` fsyncs the file first and the folder after, so the rename survives a power cut."""
    final = Path(path)
    if durable:
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp, final)
    if durable:
        _fsync_dir(final.parent)
    return final


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], *,
                 durable: bool = True) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place
    (see :func:`publish`); a failed write leaves ``path`` as it was and no temporary file."""
    tmp = temp_beside(path)
    try:
        write(str(tmp))
        return publish(tmp, path, durable=durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def replace_folder(staged: str | os.PathLike, path: str | os.PathLike, *,
                   durable: bool = True) -> Path:
    """Put the complete folder ``staged`` (written beside ``path``, same filesystem) at ``path``,
    replacing what was there: the old folder is renamed aside, then removed. Readers see the old
    folder or the new one, never a mix; ``durable`` fsyncs every file and folder first."""
    staged, final = Path(staged), Path(path)
    if durable:
        _fsync_tree(staged)
    old = final.with_name(f".{final.name}.{os.getpid()}-{os.urandom(4).hex()}.old")
    had_old = final.exists() or final.is_symlink()
    if had_old:
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except BaseException:
        if had_old:
            os.replace(old, final)
        raise
    if durable:
        _fsync_dir(final.parent)
    if had_old:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return final


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    return atomic_write(path, write, durable=durable)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | os.PathLike, data: Any, *, durable: bool = True,
                      **dump_options: Any) -> Path:
    """JSON (indented, UTF-8, trailing newline) written atomically."""
    options = {"indent": 2, "ensure_ascii": False, **dump_options}
    return atomic_write_text(path, json.dumps(data, **options) + "\n", durable=durable)


# -- digests ---------------------------------------------------------------------------------------

def bytes_digest(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def sha256_hex(data: bytes | str) -> str:
    """sha256 (hex) of bytes, or of a string's UTF-8: for the fingerprints that were recorded
    with sha256 before xxh3 (a retriever's configuration, a KB source's first MiB)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def file_digest(path: str | os.PathLike, progress: Callable[[int], Any] | None = None) -> str:
    """xxh3-128 of a file's bytes, hashed straight from a memory map (no copy: ~10 GB/s from the
    page cache); ``progress`` gets the bytes hashed."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                if hasattr(mapped, "madvise"):
                    mapped.madvise(mmap.MADV_SEQUENTIAL)
                view = memoryview(mapped)
                try:
                    for start in range(0, size, _CHUNK):
                        block = view[start:start + _CHUNK]
                        digest.update(block)
                        block.release()
                        if progress is not None:
                            progress(min(_CHUNK, size - start))
                finally:
                    view.release()
    return digest.hexdigest()


def canonical_json(data: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` carrying the digest of its own canonical form under SEAL_KEY."""
    body = {k: v for k, v in manifest.items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: f"{DIGEST}:{bytes_digest(canonical_json(body))}"}


def check_seal(manifest: dict[str, Any], where: str | os.PathLike) -> None:
    """Raise :class:`CorruptFileError` unless ``manifest`` is sealed and unchanged."""
    recorded = manifest.get(SEAL_KEY)
    if not isinstance(recorded, str):
        raise CorruptFileError(f"{where} has no {SEAL_KEY}: it was not written by this version "
                               "of rag-vqa, or the field was removed")
    body = {k: v for k, v in manifest.items() if k != SEAL_KEY}
    try:
        actual = f"{DIGEST}:{bytes_digest(canonical_json(body))}"
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"{where} holds values JSON cannot represent: {exc}") from exc
    if actual != recorded:
        raise CorruptFileError(f"{where} was modified after it was written (its content no longer "
                               f"matches its {SEAL_KEY}): it is corrupt or was edited by hand")


# -- careful JSON records ------------------------------------------------------------------------

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_BOM = "\ufeff"


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The key path of the first string holding a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(the record)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, path or "(a key)") or _lone_surrogate(
                item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _decode(text: str | bytes) -> str:
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRecordError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text[1:] if text.startswith(_BOM) else text


def loads_json(text: str | bytes) -> Any:
    """:func:`loads_record` without its lone-surrogate check: for readers that keep a record
    whose one field is bad and check the value with :func:`check_json_value`, which names it."""
    text = _decode(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONRecordError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise JSONRecordError("JSON nested too deeply to read") from None
    except ValueError:  # an integer beyond sys.get_int_max_str_digits()
        raise JSONRecordError(TOO_LONG_NUMBER) from None


def loads_record(text: str | bytes) -> Any:
    """``json.loads`` for one record of a user's file, refusing what would break later.

    A leading byte-order mark is ignored. Nesting too deep for the parser, invalid UTF-8 and lone
    surrogates raise :class:`JSONRecordError` (a ``ValueError``); so does invalid JSON."""
    text = _decode(text)
    value = loads_json(text)
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(value)
        if where is not None:
            raise JSONRecordError("contains a lone surrogate escape (such as \\ud800), which is "
                                  "not valid Unicode", None if where == "(the record)" else where)
    return value


MAX_JSON_DEPTH = 100  # deeper values parse, then crash repr() / json.dumps() much later
TOO_LONG_NUMBER = (f"a number too long to read (more than {sys.get_int_max_str_digits()} "
                   "digits)")


def check_json_value(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``value`` (a decoded record: JSON, a parquet row) if it nests at most ``max_depth``
    containers deep and holds no lone surrogate, else :class:`JSONRecordError` naming the
    top-level field. Iterative, so a value that parsed but would overflow the stack later (in
    ``repr``, ``==`` or ``json.dumps``) is refused here, where it is still one record's problem.
    Decoders that do not check surrogates (streaming, ``surrogateescape`` text) rely on it."""
    def unicode(text: str, field: str | None) -> None:
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise JSONRecordError("contains a lone surrogate (an escape such as \\ud800, or "
                                      "bytes that are not valid UTF-8)", field) from None

    stack: list[tuple[Any, str | None, int]] = [(value, None, 0)]
    while stack:
        item, field, depth = stack.pop()
        if isinstance(item, str):
            unicode(item, field)
            continue
        if not isinstance(item, (dict, list, tuple)):
            continue
        if depth >= max_depth:
            raise JSONRecordError(f"nested more than {max_depth} levels deep", field)
        if isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str):  # before it names a field in a message
                    unicode(key, "(a key)" if field is None else field)
                stack.append((sub, str(key) if field is None else field, depth + 1))
        else:
            stack.extend((sub, field, depth + 1) for sub in item)
    return value


def read_jsonl_records(path: str | os.PathLike,
                       loads: Callable[[bytes], Any] = loads_record
                       ) -> Iterator[tuple[int, Any, JSONRecordError | None]]:
    """(line number, value or None, error or None) for each non-blank line of a UTF-8 JSONL file
    (a byte-order mark is accepted); the caller decides whether an error is fatal. ``loads``:
    :func:`loads_record`, or :func:`loads_json` for callers that check fields themselves."""
    require_file(path, "JSONL file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, loads(raw), None
            except JSONRecordError as exc:
                yield number, None, exc


# -- what a path is -------------------------------------------------------------------------------

def path_kind(path: str | os.PathLike) -> str:
    """'file', 'missing', or what else it is ('a folder', 'a FIFO (named pipe)', ...)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is a regular file, else FileNotFoundError / ValueError saying what it is.
    Never opens it, so a FIFO cannot block and /dev/zero cannot be read forever."""
    kind = path_kind(path)
    if kind == "file":
        return Path(path)
    if kind == "missing":
        raise FileNotFoundError(f"{what} {path} does not exist")
    raise ValueError(f"{what} {path} is {kind}, not a regular file")

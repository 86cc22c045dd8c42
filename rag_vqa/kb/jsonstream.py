"""Streaming the items of one huge top-level JSON object.

The Encyclopedic-VQA knowledge base is a single JSON object of several GB (url -> article);
``json.load`` would need tens of GB of memory. :func:`iter_object_items` reads the file in chunks
and decodes one ``(key, value)`` pair at a time with ``json.JSONDecoder.raw_decode``, so memory is
bounded by the largest single value plus one chunk.

A decode failure can mean two things: the value continues past the end of the buffer (read more
and retry) or the input is malformed. A truncated buffer makes the decoder fail within a few
characters of the buffer's end (or inside a string that has not ended yet); a failure earlier
than that is malformed input and is reported at once, with the key and an approximate character
offset, instead of reading the rest of the file first.

A value that is well-formed JSON but cannot be used - nested too deeply for the decoder, holding a
lone surrogate, a number too long to convert - is one article's problem: it is skipped by a scan
that needs no recursion and comes out as a :class:`~retriever.fileio.JSONRecordError` in place of
the value, and the stream goes on with the next item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Protocol

from retriever.errors import UserError
from retriever.fileio import TOO_LONG_NUMBER, JSONRecordError, check_json_value

__all__ = ["JSONStreamError", "iter_object_items", "DEFAULT_CHUNK_SIZE"]

DEFAULT_CHUNK_SIZE = 1 << 20  # characters per read
# A truncated token ("fals", "\ud83d\u", "-") makes the decoder fail this close to the end; a
# number closer than this to the end may still continue.
_TAIL_MARGIN = 16
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{}]')      # what matters when skipping a container
_STRING_STOP = re.compile(r'["\\]')          # the end of a string, or an escape inside it
_SCALAR = re.compile(r"[^,}\]\s]*")         # a number or literal runs up to a delimiter


class TextReader(Protocol):
    def read(self, size: int = -1, /) -> str: ...


class JSONStreamError(UserError, ValueError):
    """Malformed or truncated JSON; ``key`` is the item being read (or the last one read) and
    ``offset`` the approximate character offset of the problem."""

    def __init__(self, message: str, *, key: str | None = None, offset: int | None = None) -> None:
        self.key = key
        self.offset = offset
        self.reason = message
        parts = []
        if key is not None:
            parts.append(f"at key {key!r}")
        if offset is not None:
            parts.append(f"near character {offset}")
        super().__init__(f"{message} ({', '.join(parts)})" if parts else message)


class _Buffer:
    """A growing window over a text stream: ``text[pos:]`` is unread, ``base`` is the absolute
    offset of ``text[0]``."""

    def __init__(self, stream: TextReader, chunk_size: int) -> None:
        self.stream = stream
        self.chunk_size = chunk_size
        self.text = ""
        self.pos = 0
        self.base = 0
        self.eof = False

    def more(self) -> bool:
        """Read another chunk (geometrically larger while one value keeps growing)."""
        if self.eof:
            return False
        size = max(self.chunk_size, len(self.text) - self.pos)
        chunk = self.stream.read(size)
        if not chunk:
            self.eof = True
            return False
        self.text += chunk
        return True

    def peek(self) -> str:
        """The next non-whitespace character ('' at end of input), reading as needed."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def compact(self) -> None:
        if self.pos >= self.chunk_size:
            self.text = self.text[self.pos:]
            self.base += self.pos
            self.pos = 0

    def offset(self, pos: int | None = None) -> int:
        return self.base + (self.pos if pos is None else pos)


def _maybe_truncated(error: json.JSONDecodeError, length: int) -> bool:
    return error.msg.startswith("Unterminated string") or error.pos >= length - _TAIL_MARGIN


def _truncated(key: str | None, buf: _Buffer) -> JSONStreamError:
    return JSONStreamError("unexpected end of input (truncated file?)", key=key,
                           offset=buf.offset(len(buf.text)))


def _skip_string(buf: _Buffer, pos: int, key: str | None) -> int:
    """The position after the string whose opening quote is at ``pos``."""
    pos += 1
    while True:
        stop = _STRING_STOP.search(buf.text, pos)
        if stop is None or (stop.group() == "\\" and stop.end() >= len(buf.text)):
            if not buf.more():
                raise _truncated(key, buf)
            continue
        if stop.group() == '"':
            return stop.end()
        pos = stop.end() + 1  # the escaped character


def _skip_value(buf: _Buffer, key: str | None) -> int:
    """The end of the JSON value at ``buf.pos``, found by scanning brackets and strings without
    decoding (or recursing): how a value the decoder cannot take is stepped over."""
    first = buf.text[buf.pos]
    if first == '"':
        return _skip_string(buf, buf.pos, key)
    if first not in "[{":
        while True:
            end = _SCALAR.match(buf.text, buf.pos).end()
            if end < len(buf.text) or not buf.more():
                return end
    depth, pos = 0, buf.pos
    while True:
        mark = _STRUCTURE.search(buf.text, pos)
        if mark is None:
            pos = len(buf.text)
            if not buf.more():
                raise _truncated(key, buf)
            continue
        char = mark.group()
        if char == '"':
            pos = _skip_string(buf, mark.start(), key)
            continue
        depth += 1 if char in "[{" else -1
        pos = mark.end()
        if depth == 0:
            return pos


def _unusable(buf: _Buffer, key: str | None, reason: str) -> JSONRecordError:
    buf.pos = _skip_value(buf, key)
    return JSONRecordError(reason)


def _decode(buf: _Buffer, decoder: json.JSONDecoder, key: str | None) -> Any:
    """Decode the value starting at ``buf.pos`` (no leading whitespace), reading more as needed.
    A well-formed value the decoder cannot take comes back as a JSONRecordError."""
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, buf.pos)
        except RecursionError:
            return _unusable(buf, key, "JSON nested too deeply to read")
        except json.JSONDecodeError as exc:
            if not buf.eof and _maybe_truncated(exc, len(buf.text)):
                buf.more()
                continue
            truncated = buf.eof and (exc.msg.startswith("Unterminated string")
                                     or not buf.text[exc.pos:].strip())
            reason = "unexpected end of input (truncated file?)" if truncated \
                else f"malformed JSON: {exc.msg}"
            raise JSONStreamError(reason, key=key, offset=buf.offset(exc.pos)) from None
        except ValueError:  # an integer beyond sys.get_int_max_str_digits()
            return _unusable(buf, key, TOO_LONG_NUMBER)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not buf.eof \
                and len(buf.text) - end < _TAIL_MARGIN:
            buf.more()  # "12" may be "12345" or "1" may be "1.5e3" once the next chunk is read
            continue
        buf.pos = end
        return value


def iter_object_items(text_file: TextReader, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      ) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` for each member of the top-level JSON object in ``text_file`` (a
    text stream with ``read(n)``), in file order, holding at most one value in memory. A value
    that cannot be used (see the module docstring) is yielded as a ``JSONRecordError``.

    Raises :class:`JSONStreamError` (with the key and a character offset) on malformed or
    truncated input, when the top level is not an object, or when data follows it.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    buf = _Buffer(text_file, chunk_size)
    decoder = json.JSONDecoder()
    first = buf.peek()
    if first == "\ufeff":  # a byte-order mark decoded as text
        buf.pos += 1
        first = buf.peek()
    if first != "{":
        found = "empty input" if first == "" else f"found {first!r}"
        raise JSONStreamError(f"expected a JSON object at the top level, {found}",
                              offset=buf.offset())
    buf.pos += 1
    last_key: str | None = None
    if buf.peek() == "}":
        buf.pos += 1
    else:
        while True:
            char = buf.peek()
            if char != '"':
                what = "end of input (truncated file?)" if char == "" else repr(char)
                raise JSONStreamError(f"expected a property name in double quotes, found {what}",
                                      key=last_key, offset=buf.offset())
            key = _decode(buf, decoder, last_key)
            char = buf.peek()
            if char != ":":
                what = "end of input" if char == "" else repr(char)
                raise JSONStreamError(f"expected ':' after the key, found {what}", key=key,
                                      offset=buf.offset())
            buf.pos += 1
            if buf.peek() == "":
                raise JSONStreamError("unexpected end of input (truncated file?)", key=key,
                                      offset=buf.offset())
            value = _decode(buf, decoder, key)
            if not isinstance(value, JSONRecordError):
                try:
                    check_json_value(value)
                except JSONRecordError as exc:
                    value = exc
            yield key, value
            last_key = key
            char = buf.peek()
            buf.compact()
            if char == ",":
                buf.pos += 1
                buf.peek()
                continue
            if char == "}":
                buf.pos += 1
                break
            what = "end of input (truncated file?)" if char == "" else repr(char)
            raise JSONStreamError(f"expected ',' or '}}' after the value, found {what}",
                                  key=last_key, offset=buf.offset())
    trailing = buf.peek()
    if trailing:
        raise JSONStreamError(f"extra data after the top-level object: {trailing!r}",
                              key=last_key, offset=buf.offset())

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["JSONStreamError", "iter_object_items", "DEFAULT_CHUNK_SIZE"]

DEFAULT_CHUNK_SIZE = 1 << 20  # characters per read
# A truncated token ("fals", "\ud83d\u", "-") makes the decoder fail this close to the end; a
# number closer than this to the end may still continue.
_TAIL_MARGIN = 16
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class TextReader(Protocol):
    def read(self, size: int = -1, /) -> str: ...


class JSONStreamError(ValueError):
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


def _decode(buf: _Buffer, decoder: json.JSONDecoder, key: str | None) -> Any:
    """Decode the value starting at ``buf.pos`` (no leading whitespace), reading more as needed."""
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, buf.pos)
        except json.JSONDecodeError as exc:
            if not buf.eof and _maybe_truncated(exc, len(buf.text)):
                buf.more()
                continue
            truncated = buf.eof and (exc.msg.startswith("Unterminated string")
                                     or not buf.text[exc.pos:].strip())
            reason = "unexpected end of input (truncated file?)" if truncated \
                else f"malformed JSON: {exc.msg}"
            raise JSONStreamError(reason, key=key, offset=buf.offset(exc.pos)) from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not buf.eof \
                and len(buf.text) - end < _TAIL_MARGIN:
            buf.more()  # "12" may be "12345" or "1" may be "1.5e3" once the next chunk is read
            continue
        buf.pos = end
        return value


def iter_object_items(text_file: TextReader, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      ) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` for each member of the top-level JSON object in ``text_file`` (a
    text stream with ``read(n)``), in file order, holding at most one value in memory.

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

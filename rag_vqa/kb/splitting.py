"""Splitting article text into passages that fit the retriever's text window.

ReT's CLIP text encoder reads 77 tokens, 75 of them content (after BOS/EOS); anything longer is
cut off silently and never retrieved. Articles are therefore split by section, then inside a
section by a token budget: windows of at most ``max_tokens`` minus the context prefix, cut at
paragraph ends when a window is at least half full (merging short paragraphs greedily), otherwise
at word ends with ``overlap`` tokens shared by consecutive windows so no sentence is lost at a cut.

Token positions come from a Hugging Face *fast* tokenizer's offsets when one is given, otherwise
from a deterministic heuristic that never needs a download and errs on the side of more tokens.
Every chunk is an exact substring of the source (never cut inside a token) and is re-counted with
its prefix before it is accepted, so the budget holds even where tokenization depends on context.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Protocol

from retriever.errors import UserInputError

from .records import Passage

__all__ = ["Chunk", "TokenCounter", "HeuristicCounter", "TokenizerCounter", "PassageSplitter"]

# One match = one token: ASCII letter runs in pieces of up to 6 (a common word is one CLIP token,
# a rare one several), every digit (CLIP splits numbers into digits), every other letter (non-
# ASCII letters are several byte-level BPE tokens, so one per character is conservative) and
# every punctuation/symbol character.
_HEURISTIC_TOKEN = re.compile(r"[A-Za-z]{1,6}|\d|[^\W\d_]|\S")
_NEWLINES = re.compile(r"\n\s*")


class TokenCounter(Protocol):
    name: str

    def spans(self, text: str) -> list[tuple[int, int]]: ...

    def count(self, text: str) -> int: ...


class HeuristicCounter:
    """Tokenizer-free token counting (see ``_HEURISTIC_TOKEN``); deterministic and offline."""

    name = "heuristic"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _HEURISTIC_TOKEN.finditer(text)]

    def count(self, text: str) -> int:
        return len(_HEURISTIC_TOKEN.findall(text))


class TokenizerCounter:
    """Token positions from a Hugging Face fast tokenizer (offsets need the Rust backend)."""

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise UserInputError(f"{type(tokenizer).__name__} is not a fast tokenizer; splitting "
                                 "needs token offsets (return_offsets_mapping), which only fast "
                                 "tokenizers provide")
        self.tokenizer = tokenizer
        self.name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)

    def spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 verbose=False)
        return [(a, b) for a, b in encoded["offset_mapping"] if b > a]

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


@dataclass(frozen=True)
class Chunk:
    """A piece of one section: ``text == source[start:end]``; tokens ``[token_start, token_end)``
    of the section's token spans."""

    text: str
    start: int
    end: int
    token_start: int
    token_end: int


class PassageSplitter:
    """Turns article sections into passages that fit ``max_tokens`` (prefix included)."""

    def __init__(self, max_tokens: int = 75, overlap: int = 16, tokenizer: Any = None,
                 context_prefix: bool = True) -> None:
        if max_tokens < 8:
            raise UserInputError(f"max_tokens must be at least 8, got {max_tokens}")
        if not 0 <= overlap < max_tokens // 2:
            raise UserInputError(f"overlap must be between 0 and {max_tokens // 2 - 1} (under half "
                                 f"of max_tokens={max_tokens}), got {overlap}")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.context_prefix = context_prefix
        self.counter: TokenCounter = HeuristicCounter() if tokenizer is None \
            else TokenizerCounter(tokenizer)

    def config(self) -> dict[str, Any]:
        """What determines the output (recorded in the manifest, compared on resume)."""
        return {"max_tokens": self.max_tokens, "overlap": self.overlap,
                "tokenizer": self.counter.name, "context_prefix": self.context_prefix}

    # -- prefix ---------------------------------------------------------------------------------

    def make_prefix(self, title: str | None, section: str | None) -> str:
        """``"{title} - {section}: "`` (or ``"{title}: "``), at most half the budget; '' when
        the prefix is off."""
        if not self.context_prefix:
            return ""
        head = " - ".join(p.strip() for p in (title, section) if p and p.strip())
        if not head:
            return ""
        prefix = f"{head}: "
        cap = self.max_tokens // 2
        if self.counter.count(prefix) <= cap:
            return prefix
        spans = self.counter.spans(head)  # shorten a very long title/section at a token end
        for keep in range(min(len(spans), cap), 0, -1):
            shorter = f"{head[:spans[keep - 1][1]].rstrip()}: "
            if self.counter.count(shorter) <= cap:
                return shorter
        return ""

    # -- splitting ------------------------------------------------------------------------------

    def split_text(self, text: str, prefix: str = "") -> list[Chunk]:
        """Chunks of ``text`` such that ``prefix + chunk.text`` fits ``max_tokens``."""
        spans = self.counter.spans(text)
        n = len(spans)
        if n == 0:
            return []
        budget = max(1, self.max_tokens - (self.counter.count(prefix) if prefix else 0))
        overlap = min(self.overlap, budget // 2)
        paragraphs = _paragraph_starts(text, spans)
        chunks: list[Chunk] = []
        start = 0
        while True:
            end_max = min(start + budget, n)
            at_paragraph = False
            if end_max == n:
                end = n
            else:
                j = bisect_right(paragraphs, end_max) - 1
                if j >= 0 and paragraphs[j] - start >= max(1, budget // 2):
                    end, at_paragraph = paragraphs[j], True
                else:
                    end = _word_end(text, spans, start, end_max)
            while end > start + 1 and self.counter.count(
                    prefix + text[spans[start][0]:spans[end - 1][1]]) > self.max_tokens:
                end -= 1
                at_paragraph = False
            chunks.append(_make_chunk(text, spans, start, end))
            if end >= n:
                return chunks
            if at_paragraph or overlap == 0:
                start = end
            else:
                start = _word_start(text, spans, max(end - overlap, start + 1), start, overlap)

    def split_section(self, text: str, *, article_id: str, section_index: int,
                      title: str | None = None, section: str | None = None,
                      url: str | None = None, language: str | None = None) -> list[Passage]:
        """Passages ``{article_id}#{section_index}-{chunk}`` of one section (none if empty)."""
        prefix = self.make_prefix(title, section)
        return [Passage(passage_id=f"{article_id}#{section_index}-{i}", text=prefix + chunk.text,
                        title=title, section=section, article_id=article_id, url=url,
                        language=language)
                for i, chunk in enumerate(self.split_text(text, prefix))]

    def context_passage(self, *, article_id: str, section_index: int, title: str | None = None,
                        section: str | None = None, url: str | None = None,
                        language: str | None = None) -> Passage:
        """A passage with no body text (the context alone), to carry an image of an empty section
        or to represent an article without any text."""
        text = self.make_prefix(title, section).rstrip().removesuffix(":")
        return Passage(passage_id=f"{article_id}#{section_index}-0", text=text, title=title,
                       section=section, article_id=article_id, url=url, language=language)


def _paragraph_starts(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """Token indices (0 < i < n) right after a line break: preferred cut points."""
    starts = [a for a, _ in spans]
    found: list[int] = []
    for match in _NEWLINES.finditer(text):
        i = bisect_left(starts, match.end())
        if 0 < i < len(spans) and (not found or found[-1] != i):
            found.append(i)
    return found


def _can_cut(text: str, spans: list[tuple[int, int]], i: int) -> bool:
    """Whether a cut before token ``i`` falls between words (not inside a word or character)."""
    prev_end, next_start = spans[i - 1][1], spans[i][0]
    if next_start < prev_end:
        return False  # several tokens for one character
    if next_start > prev_end:
        return True
    return not (text[prev_end - 1].isalnum() and text[next_start].isalnum())


def _word_end(text: str, spans: list[tuple[int, int]], start: int, end_max: int) -> int:
    """The last word end in the second half of ``[start, end_max]`` (``end_max`` if none)."""
    lowest = start + max(1, (end_max - start) // 2)
    for end in range(end_max, lowest - 1, -1):
        if _can_cut(text, spans, end):
            return end
    return end_max


def _word_start(text: str, spans: list[tuple[int, int]], wanted: int, previous: int,
                overlap: int) -> int:
    """A word start at or before ``wanted`` (at most ``overlap`` tokens back), after
    ``previous``."""
    lowest = max(previous + 1, wanted - overlap)
    for start in range(wanted, lowest - 1, -1):
        if _can_cut(text, spans, start):
            return start
    return wanted


def _make_chunk(text: str, spans: list[tuple[int, int]], first: int, stop: int) -> Chunk:
    start, end = spans[first][0], spans[stop - 1][1]
    piece = text[start:end]
    stripped = piece.strip()
    if stripped != piece:  # tokenizers whose offsets include surrounding spaces
        start += len(piece) - len(piece.lstrip())
        end = start + len(stripped)
    return Chunk(text=stripped, start=start, end=end, token_start=first, token_end=stop)

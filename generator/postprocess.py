"""From a model's raw continuation to the short answer that gets scored.

The first non-empty line is kept; lead-ins ("The answer is", "Answer:"), wrapping quotes, trailing
citation markers ("[2]") and trailing punctuation are removed. The raw text is always kept next
to the cleaned answer, so nothing is lost.
"""

from __future__ import annotations

import re

__all__ = ["clean_answer", "first_line"]

_LEAD_INS = re.compile(
    r"^\s*(?:(?:the\s+)?(?:short\s+|final\s+)?answer\s*(?:is|:)\s*:?|a\s*:|answer\s*-)\s*",
    re.IGNORECASE)
_TRAILING_CITATIONS = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+\s*$")
_QUOTES = "\"'`“”‘’«»"
_TRAILING_PUNCT = ".,;:!?。"


def first_line(text: str) -> str:
    """The first line with any content."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def clean_answer(raw: str) -> str:
    text = first_line(raw)
    for _ in range(2):  # "Answer: The answer is X" -> "X"
        text = _LEAD_INS.sub("", text, count=1)
    text = _TRAILING_CITATIONS.sub("", text.rstrip(_TRAILING_PUNCT)).strip()
    text = text.rstrip(_TRAILING_PUNCT).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text.rstrip(_TRAILING_PUNCT).strip()

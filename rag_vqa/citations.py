"""Cited answers: the generator is shown passages numbered [1], [2], ... in rank order and may
cite them (asked by ``generator.prompts.PromptConfig.cite_instruction``). ``parse_citations``
maps the markers back to passage ids (checked against what the prompt held) and removes them
from the answer, so the answer that is scored is the same text an uncited answer would be and
the official metrics are unchanged.

Markers understood: ``[1]``, ``[1, 3]``, ``[1][2]``, ``[2-4]`` (a range; en dash too). A number
outside 1..len(shown) is reported as invalid and cites nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Citations", "parse_citations"]

_MARKER = re.compile(r"\s*\[\s*(\d+(?:\s*(?:[-\u2013]|,)\s*\d+)*)\s*\]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
MAX_RANGE = 100   # a "range" longer than this is not a citation ([1-2000])


@dataclass
class Citations:
    answer: str                                        # the answer without its markers
    passage_ids: list[str] = field(default_factory=list)   # cited, first mention first
    numbers: list[int] = field(default_factory=list)       # the valid numbers, same order
    invalid: list[int] = field(default_factory=list)       # numbers outside what was shown


def _numbers(body: str) -> list[int] | None:
    out = []
    for part in body.split(","):
        ends = [int(x) for x in re.split(r"[-\u2013]", part.strip())]
        if len(ends) == 2:
            if ends[1] < ends[0] or ends[1] - ends[0] > MAX_RANGE:
                return None
            out.extend(range(ends[0], ends[1] + 1))
        else:
            out.extend(ends)
    return out


def parse_citations(text: str, shown: Sequence[str | None]) -> Citations:
    """``shown``: the passage ids of the prompt, in the order they were numbered."""
    if not isinstance(text, str):
        raise ValueError(f"an answer must be text, got {type(text).__name__}")
    valid, invalid = [], []

    def strip(match: re.Match) -> str:
        numbers = _numbers(match.group(1))
        if numbers is None:
            return match.group(0)    # not a citation: leave it in the answer
        for n in numbers:
            target = valid if 1 <= n <= len(shown) and shown[n - 1] is not None else invalid
            if n not in target:
                target.append(n)
        return ""

    answer = _MARKER.sub(strip, text)
    answer = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(answer.split())).strip()
    return Citations(answer, [str(shown[n - 1]) for n in valid], valid, invalid)


"""The unit a knowledge base stores and the retriever encodes: one passage."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Passage", "MAX_ID_LENGTH", "CONTROL_CHARACTERS", "id_problem"]

MAX_ID_LENGTH = 1000
# C0/C1 controls (NUL, newline, ESC ...), line/paragraph separators and lone surrogates: an id
# holding one breaks line-oriented files (JSONL, TSV rankings), terminals and log lines
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot serve as an id (passage, article, question), or None if it can.

    Ids come from users' files and end up as keys in SQLite, JSONL lines, TSV rankings and
    messages, so one rule holds everywhere: a string, or an integer (ids of some published files
    are numbers; ``str(value)`` is the id); not blank, at most MAX_ID_LENGTH characters, no
    control character."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string id, got {type(value).__name__}"
    if isinstance(value, int):
        return None
    if not value.strip():
        return "expected a non-empty id, got a blank string"
    if len(value) > MAX_ID_LENGTH:
        return f"the id is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed"
    bad = CONTROL_CHARACTERS.search(value)
    if bad:
        return (f"the id contains the control character {bad.group()!r} at position "
                f"{bad.start()}; ids must be printable")
    return None


@dataclass(frozen=True)
class Passage:
    """One retrievable passage.

    ``text`` is exactly what gets encoded (it may carry a "title - section: " context prefix).
    ``article_id`` groups passages of one article so retrieval can be scored per article
    (Wikidata QID for InfoSeek, Wikipedia URL for E-VQA, the passage's own id for passage
    formats). ``image`` is a path relative to the KB's image root, or an http(s) URL used only as a
    key (see :mod:`rag_vqa.kb.imagerefs`). ``extra`` keeps unknown source fields (JSON values).
    """

    passage_id: str
    text: str
    title: str | None = None
    section: str | None = None
    article_id: str | None = None
    url: str | None = None
    image: str | None = None
    language: str | None = None
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Cheap guards: a wrong type here would otherwise surface as an obscure SQLite error.
        if not isinstance(self.passage_id, str) or not self.passage_id:
            raise TypeError(f"passage_id must be a non-empty string, got {self.passage_id!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"passage {self.passage_id!r}: text must be a string, "
                            f"got {type(self.text).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

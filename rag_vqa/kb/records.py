"""The unit a knowledge base stores and the retriever encodes: one passage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Passage"]


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

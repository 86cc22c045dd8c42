"""A typed, read-only view of an index manifest (``manifest.json``), so that code outside the
index reads ``info.retriever`` or ``info.rows`` instead of spelling string keys, and the
manifest's layout can change in one place. The schema is checked when the manifest is read
(storage.check_manifest): the accessors can rely on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IndexManifest"]


@dataclass(frozen=True)
class IndexManifest:
    raw: Mapping[str, Any]

    @property
    def method(self) -> str:
        return str(self.raw["method"])

    @property
    def sharded(self) -> bool:
        return self.raw.get("kind") == "sharded"

    @property
    def tokens(self) -> int:
        return int(self.raw["dims"]["tokens"])

    @property
    def dim(self) -> int:
        return int(self.raw["dims"]["dim"])

    @property
    def dims(self) -> dict[str, int]:
        return {"tokens": self.tokens, "dim": self.dim}

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.raw["params"])

    @property
    def rows(self) -> int:
        """Rows stored, removed ones included."""
        return int(self.raw["counts"]["rows"])

    @property
    def live(self) -> int:
        return int(self.raw["counts"]["live"])

    @property
    def created(self) -> str:
        return str(self.raw["created"])

    @property
    def updated(self) -> str:
        return str(self.raw["updated"])

    @property
    def rebuild_advised(self) -> str | None:
        return self.raw.get("rebuild_advised")

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.raw.get("metadata") or {})

    def _meta(self, key: str) -> dict[str, Any]:
        value = self.metadata.get(key)
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def retriever(self) -> dict[str, Any]:
        """The fingerprint of the retriever that encoded the documents ({} when not recorded)."""
        return self._meta("retriever")

    @property
    def kb(self) -> dict[str, Any]:
        """The knowledge base the index was built from: path, digest ({} when not recorded)."""
        return self._meta("kb")

    @property
    def build_report(self) -> dict[str, Any]:
        return self._meta("build_report")

"""Errors of the knowledge-base package.

Every one is a ``ValueError`` subclass: they describe bad input or a bad request, so the command
line reports them as user errors (exit code 2) with the message alone, no traceback.
"""

from __future__ import annotations

from pathlib import Path

from retriever.errors import UserError

__all__ = ["KBError", "KBFormatError", "KBSourceError", "KBStoreError", "DuplicatePassageError",
           "UnsafeImagePath", "ResumeMismatchError"]


class KBError(UserError, ValueError):
    """Base class: anything wrong with a knowledge base, its source or a request about it."""


class KBFormatError(KBError):
    """A record of a source file that does not follow its format.

    ``location`` is where in the file ("line 12", "row 3", "key 'https://...'"), ``field`` the
    offending field (None when the whole record is unreadable).
    """

    def __init__(self, path: str | Path, location: str, field: str | None, message: str) -> None:
        self.path = str(path)
        self.location = location
        self.field = field
        self.reason = message
        where = f"{self.path}, {location}"
        what = f"field {field!r}: {message}" if field else message
        super().__init__(f"{where}: {what}")

    @property
    def short_location(self) -> str:
        """``file name, location`` without the directory, for reports."""
        return f"{Path(self.path).name}, {self.location}"


class KBSourceError(KBError):
    """A source that cannot be read at all (missing, wrong kind of file, unknown format)."""


class KBStoreError(KBError):
    """A folder that is not a (finished, supported) knowledge base, or a misuse of the store."""


class DuplicatePassageError(KBError):
    """A passage id that is already in the store."""

    def __init__(self, passage_id: str, where: str | None = None) -> None:
        self.passage_id = passage_id
        suffix = f" ({where})" if where else ""
        super().__init__(f"duplicate passage_id {passage_id!r}{suffix}: passage ids must be unique "
                         "in a knowledge base")


class UnsafeImagePath(KBError):
    """An image reference that could point outside the image root (absolute, ``..``, symlink)."""

    def __init__(self, ref: str, reason: str) -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(f"refused image path {ref!r}: {reason}")


class ResumeMismatchError(KBError):
    """An unfinished import whose source or parameters differ from the current request."""

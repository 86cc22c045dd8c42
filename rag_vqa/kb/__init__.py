"""Knowledge bases: streaming importers for published formats, passage splitting, image
references and the SQLite passage store.

A KB is a folder: ``manifest.json`` (format version, source, parameters, counts, sha256 of the
database, import report) and ``passages.sqlite``. Create one with :func:`import_kb` (or
``rag-vqa kb import``), read it with :meth:`PassageStore.open`.
"""

from .errors import (
    DuplicatePassageError,
    KBError,
    KBFormatError,
    KBSourceError,
    KBStoreError,
    ResumeMismatchError,
    UnsafeImagePath,
)
from .imagerefs import check_image_ref, resolve_image, url_to_relpath
from .importer import ImportReport, import_kb
from .readers import FORMATS, iter_passages, iter_records
from .records import Passage
from .splitting import PassageSplitter
from .stats import KBStats
from .store import PassageStore

__all__ = [
    "Passage",
    "PassageStore",
    "KBStats",
    "PassageSplitter",
    "ImportReport",
    "import_kb",
    "FORMATS",
    "iter_records",
    "iter_passages",
    "check_image_ref",
    "resolve_image",
    "url_to_relpath",
    "KBError",
    "KBFormatError",
    "KBSourceError",
    "KBStoreError",
    "DuplicatePassageError",
    "UnsafeImagePath",
    "ResumeMismatchError",
]

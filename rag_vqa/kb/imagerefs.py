"""Image references of passages: relative paths under a user-given image root, or URL keys.

A knowledge base comes from elsewhere, so its image paths are untrusted: an absolute path, a
``..`` that climbs out of the root or a symlink pointing outside it could make us read (and show
or encode) arbitrary files. Such references are refused with :class:`UnsafeImagePath`, and so is
anything that is neither a plain relative path nor an http(s) URL: other URL schemes
(``javascript:``, ``data:``, ``file:`` ...) would be dangerous wherever a reference is shown as a
link, and control characters break the files and terminals references are written to.

URLs (http/https) are only keys: nothing is ever downloaded here or at query time. The local file
for a URL is ``<image root>/`` + :func:`url_to_relpath` (``urls/<sha1[:2]>/<sha1><ext>``); an
explicit fetch step may fill that layout later, and until then such images count as missing.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from retriever.fileio import path_kind

from .errors import UnsafeImagePath
from .records import CONTROL_CHARACTERS

__all__ = ["IMAGE_SUFFIXES", "MAX_REF_LENGTH", "is_url", "url_to_relpath", "check_image_ref",
           "locate_image", "resolve_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
MAX_REF_LENGTH = 4096  # PATH_MAX on Linux; real image paths and URLs are far shorter
_URL = re.compile(r"^https?://", re.IGNORECASE)
_URL_WITH_HOST = re.compile(r"^https?://[^/?#]+", re.IGNORECASE)
# RFC 3986: a scheme is a letter, then letters, digits, '+', '-', '.', then ':'. A relative path
# whose first segment holds a colon must be written "./a:b.jpg", exactly as in a URL reference.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def is_url(ref: str) -> bool:
    """Whether ``ref`` is an http(s) URL (a key, not a path)."""
    return bool(_URL.match(ref))


def url_to_relpath(url: str) -> str:
    """Where the pixels for ``url`` live under the image root (deterministic, fetch-friendly)."""
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()
    path = url.split("?", 1)[0].split("#", 1)[0]
    suffix = posixpath.splitext(path.rsplit("/", 1)[-1])[1].lower()
    ext = suffix if suffix in IMAGE_SUFFIXES else ".jpg"
    return f"urls/{digest[:2]}/{digest}{ext}"


def check_image_ref(ref: str) -> str:
    """The normalised form of an image reference, or :class:`UnsafeImagePath`.

    http(s) URLs with a host come back unchanged; any other scheme is refused. Paths must be
    relative and stay inside the root once normalised (``a/../b.jpg`` is ``b.jpg``; ``../b.jpg``
    is refused); backslashes count as separators so a Windows-style path cannot smuggle a ``..``
    through. This is a purely lexical check; symlinks are checked when the file is resolved
    (:func:`resolve_image`).
    """
    if not isinstance(ref, str):
        raise UnsafeImagePath(repr(ref)[:80], f"expected a string, got {type(ref).__name__}")
    if not ref.strip():
        raise UnsafeImagePath(ref, "empty image reference")
    if ref != ref.strip():
        raise UnsafeImagePath(ref, "starts or ends with whitespace")
    if len(ref) > MAX_REF_LENGTH:
        raise UnsafeImagePath(ref[:80] + "...", f"{len(ref)} characters long; at most "
                                                 f"{MAX_REF_LENGTH} are allowed")
    bad = CONTROL_CHARACTERS.search(ref)
    if bad:
        what = "a NUL character" if bad.group() == "\x00" else \
            f"the control character {bad.group()!r}"
        raise UnsafeImagePath(ref, f"contains {what}")
    if is_url(ref):
        if not _URL_WITH_HOST.match(ref):
            raise UnsafeImagePath(ref, "the URL has no host")
        return ref
    posix = ref.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(ref).is_absolute() or \
            PureWindowsPath(ref).drive:
        raise UnsafeImagePath(ref, "absolute paths are not allowed; give paths relative to the "
                                   "image root")
    scheme = _SCHEME.match(ref)
    if scheme:
        raise UnsafeImagePath(ref, f"the {scheme.group()[:-1].lower()!r} scheme is not allowed: "
                                   "only http(s) URLs are image keys (write a relative path "
                                   "with a colon in its first part as ./name)")
    normalised = posixpath.normpath(posix)
    if normalised == ".." or normalised.startswith("../"):
        raise UnsafeImagePath(ref, "the path escapes the image root")
    if normalised in (".", ""):
        raise UnsafeImagePath(ref, "the path names the image root itself, not a file")
    if normalised != normalised.strip():  # "a /" normalises to "a ": still a fixed point
        raise UnsafeImagePath(ref, "the normalised path starts or ends with whitespace")
    if _SCHEME.match(normalised) or PureWindowsPath(normalised).drive:
        return "./" + normalised  # "./a:b.jpg" normalised must not read as a scheme or drive
    return normalised


def locate_image(ref: str | None, root: str | Path | None) -> Path | None:
    """Where the file for ``ref`` must be under ``root``, whether or not something is there;
    None when there is no reference or no root. Raises :class:`UnsafeImagePath` for a reference
    that is, or resolves (through symlinks), outside the root."""
    if not ref or root is None:
        return None
    relative = url_to_relpath(check_image_ref(ref)) if is_url(ref) else check_image_ref(ref)
    root_path = Path(root).resolve()
    candidate = (root_path / relative).resolve()
    if not candidate.is_relative_to(root_path):
        raise UnsafeImagePath(ref, f"resolves outside the image root {root_path} (symlink?)")
    return candidate


def resolve_image(ref: str | None, root: str | Path | None) -> Path | None:
    """The image file for ``ref`` under ``root``; None when there is no reference, no root or
    no regular file there (a folder, FIFO or device is never returned, so never opened). Raises
    :class:`UnsafeImagePath` like :func:`locate_image`."""
    candidate = locate_image(ref, root)
    return candidate if candidate is not None and path_kind(candidate) == "file" else None

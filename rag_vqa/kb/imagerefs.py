"""Image references of passages: relative paths under a user-given image root, or URL keys.

A knowledge base comes from elsewhere, so its image paths are untrusted: an absolute path, a
``..`` that climbs out of the root or a symlink pointing outside it could make us read (and show
or encode) arbitrary files. Such references are refused with :class:`UnsafeImagePath`.

URLs (http/https) are only keys: nothing is ever downloaded here or at query time. The local file
for a URL is ``<image root>/`` + :func:`url_to_relpath` (``urls/<sha1[:2]>/<sha1><ext>``); an
explicit fetch step may fill that layout later, and until then such images count as missing.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import UnsafeImagePath

__all__ = ["IMAGE_SUFFIXES", "is_url", "url_to_relpath", "check_image_ref", "resolve_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
_URL = re.compile(r"^https?://", re.IGNORECASE)
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

    URLs come back unchanged. Paths must be relative and stay inside the root once normalised
    (``a/../b.jpg`` is ``b.jpg``; ``../b.jpg`` is refused); backslashes count as separators so a
    Windows-style path cannot smuggle a ``..`` through. This is a purely lexical check; symlinks are
    checked when the file is resolved (:func:`resolve_image`).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise UnsafeImagePath(str(ref), "empty image reference")
    if is_url(ref):
        return ref
    if "\x00" in ref:
        raise UnsafeImagePath(ref, "contains a NUL character")
    if PurePosixPath(ref).is_absolute() or PureWindowsPath(ref).is_absolute() or \
            PureWindowsPath(ref).drive:
        raise UnsafeImagePath(ref, "absolute paths are not allowed; give paths relative to the "
                                   "image root")
    if _SCHEME.match(ref) and "://" in ref:
        raise UnsafeImagePath(ref, "only http(s) URLs are supported as image keys")
    normalised = posixpath.normpath(ref.replace("\\", "/"))
    if normalised == ".." or normalised.startswith("../"):
        raise UnsafeImagePath(ref, "the path escapes the image root")
    if normalised in (".", ""):
        raise UnsafeImagePath(ref, "the path names the image root itself, not a file")
    return normalised


def resolve_image(ref: str | None, root: str | Path | None) -> Path | None:
    """The image file for ``ref`` under ``root``; None when there is no reference, no root or
    no such file. Raises :class:`UnsafeImagePath` for a reference that is, or resolves (through
    symlinks), outside the root."""
    if not ref or root is None:
        return None
    relative = url_to_relpath(ref) if is_url(ref) else check_image_ref(ref)
    root_path = Path(root).resolve()
    candidate = (root_path / relative).resolve()
    if not candidate.is_relative_to(root_path):
        raise UnsafeImagePath(ref, f"resolves outside the image root {root_path} (symlink?)")
    return candidate if candidate.is_file() else None

import hashlib
import os

import pytest

from rag_vqa.kb.errors import UnsafeImagePath
from rag_vqa.kb.imagerefs import check_image_ref, is_url, resolve_image, url_to_relpath


@pytest.mark.parametrize("ref", ["/etc/passwd", "../secret.jpg", "a/../../secret.jpg", "..",
                                 "..\\..\\secret.jpg", "C:\\images\\x.jpg", "C:x.jpg",
                                 "\\\\server\\share\\x.jpg", "file:///etc/passwd",
                                 "s3://bucket/x.jpg", "", "   ", ".", "a/..", "x\x00.jpg"])
def test_unsafe_references_are_refused_and_named(ref):
    with pytest.raises(UnsafeImagePath) as info:
        check_image_ref(ref)
    assert repr(ref) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("ref,expected", [("a/b.jpg", "a/b.jpg"), ("./a//b.jpg", "a/b.jpg"),
                                          ("a/../b.jpg", "b.jpg"), ("a\\b.jpg", "a/b.jpg"),
                                          ("https://x.org/a.png", "https://x.org/a.png")])
def test_safe_references_are_normalised(ref, expected):
    assert check_image_ref(ref) == expected


@pytest.mark.parametrize("url,ext", [
    ("https://upload.wikimedia.org/wikipedia/commons/a/ab/Eiffel.JPG", ".jpg"),
    ("http://example.org/pic.webp?width=300#frag", ".webp"),
    ("https://example.org/pic.TIFF", ".tiff"),
    ("https://example.org/image?id=12", ".jpg"),
    ("https://example.org/archive.tar.gz", ".jpg"),
    ("https://example.org/dir.png/", ".jpg"),
])
def test_url_to_relpath_is_a_sha1_layout(url, ext):
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()
    assert url_to_relpath(url) == f"urls/{digest[:2]}/{digest}{ext}"
    assert is_url(url) and not is_url("urls/ab/x.jpg")


def test_resolve_existing_missing_and_url(tmp_path):
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"jpg")
    assert resolve_image("a/x.jpg", root) == (root / "a" / "x.jpg").resolve()
    assert resolve_image("a/missing.jpg", root) is None
    assert resolve_image(None, root) is None and resolve_image("a/x.jpg", None) is None
    url = "https://example.org/p.png"
    assert resolve_image(url, root) is None  # nothing is ever downloaded
    target = root / url_to_relpath(url)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"png")
    assert resolve_image(url, root) == target.resolve()
    with pytest.raises(UnsafeImagePath):
        resolve_image("../images/a/x.jpg", root)


def test_symlinks_out_of_the_root_are_refused(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "link.jpg")
    os.symlink(tmp_path, root / "up")
    (root / "inside.jpg").write_bytes(b"ok")
    os.symlink(root / "inside.jpg", root / "fine.jpg")
    with pytest.raises(UnsafeImagePath, match="link.jpg"):
        resolve_image("link.jpg", root)
    with pytest.raises(UnsafeImagePath):
        resolve_image("up/secret.jpg", root)
    assert resolve_image("fine.jpg", root) == (root / "inside.jpg").resolve()

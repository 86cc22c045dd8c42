import hashlib
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_vqa.kb.errors import UnsafeImagePath
from rag_vqa.kb.imagerefs import (
    check_image_ref,
    is_url,
    locate_image,
    resolve_image,
    url_to_relpath,
)


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


@pytest.mark.parametrize("ref,words", [
    ("javascript:alert(1)", "'javascript' scheme"), ("JavaScript:alert(1)", "'javascript' scheme"),
    ("data:image/png;base64,iVBORw0KGgo=", "'data' scheme"), ("mailto:a@b.c", "'mailto' scheme"),
    ("file:x.jpg", "'file' scheme"), ("vbscript:x", "'vbscript' scheme"),
    (" javascript:alert(1)", "whitespace"), ("a.jpg\n", "whitespace"),
    ("a\nb.jpg", "control character"), ("a\u2028b.jpg", "control character"),
    ("a\x1bb.jpg", "control character"), ("a\ud800.jpg", "control character"),
    ("http://", "no host"), ("https:///path.jpg", "no host"),
    ("a" * 5000, "5000 characters"), (7, "expected a string"), (["a.jpg"], "expected a string"),
])
def test_references_that_are_neither_a_relative_path_nor_an_http_url(ref, words):
    with pytest.raises(UnsafeImagePath, match=words) as info:
        check_image_ref(ref)
    assert len(str(info.value)) < 500


def test_a_colon_in_the_first_part_of_a_path_needs_dot_slash():
    assert check_image_ref("./a:b.jpg") == "./a:b.jpg"
    assert check_image_ref("x/../javascript:alert(1)") == "./javascript:alert(1)"
    with pytest.raises(UnsafeImagePath):
        check_image_ref("ab:c.jpg")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.lists(st.sampled_from(
    ["a", "/", "\\", "..", ".", ":", "javascript:", "http://", "https://h", " ", "C:", "\x00",
     "é", "?", "#"]), max_size=8).map("".join))
def test_check_image_ref_refuses_or_returns_a_safe_fixed_point(ref):
    try:
        checked = check_image_ref(ref)
    except UnsafeImagePath:
        return
    assert check_image_ref(checked) == checked  # what the importer stores passes again
    if not is_url(checked):
        assert not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", checked)
        assert not checked.startswith(("/", "\\", "../")) and checked != ".."


def test_resolve_never_returns_a_non_file_and_survives_long_names(tmp_path):
    root = tmp_path / "images"
    (root / "dir.jpg").mkdir(parents=True)
    os.mkfifo(root / "pipe.jpg")
    for name in ("dir.jpg", "pipe.jpg", "x" * 300 + ".jpg"):
        assert resolve_image(name, root) is None
    assert resolve_image("zero", "/dev") is None  # a character device
    assert locate_image("pipe.jpg", root) == (root / "pipe.jpg").resolve()

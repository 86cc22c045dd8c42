import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from retriever.images import ImageLoadError, load_image, to_rgb
from tests.helpers import random_image


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_rgba_drops_alpha_like_the_reference_processor():
    rgba = random_image(0, mode="RGBA")
    out = to_rgb(rgba)
    assert out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(rgba)[..., :3])


def test_rgba_can_be_composited_onto_a_background():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent
    assert np.asarray(to_rgb(rgba, background=(255, 255, 255))).min() == 255


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "LA", "P", "YCbCr"])
def test_every_common_mode_becomes_rgb(mode):
    image = random_image(1, mode=mode if mode != "P" else "RGB")
    if mode == "P":
        image = image.quantize(8)
        image.info["transparency"] = 0
    out = load_image(png_bytes(image) if mode not in ("CMYK", "YCbCr") else image)
    assert out.mode == "RGB" and out.size == image.size


def test_grey_mode_keeps_its_values():
    grey = random_image(2, mode="L")
    out = np.asarray(to_rgb(grey))
    assert (np.array_equal(out[..., 0], np.asarray(grey))
            and np.array_equal(out[..., 0], out[..., 2]))


def test_sixteen_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = np.asarray(load_image(png_bytes(image)))
    assert out[0, :, 0].tolist() == [0, 100, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (10, 30)


def test_unreadable_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match="garbage.jpg.*not a recognised image format"):
        load_image(garbage)
    with pytest.raises(ImageLoadError, match="missing.png.*no such file"):
        load_image(tmp_path / "missing.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(random_image(3, size=(64, 64)))[:200])
    with pytest.raises(ImageLoadError, match="truncated.png.*corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="expected a PIL image, a path or bytes"):
        load_image(12345)


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(ImageLoadError, match="big.png.*90000 pixels exceeds the limit of 10000"):
        load_image(big, max_pixels=10_000)
    assert load_image(big, max_pixels=None).size == (300, 300)


def crafted_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a few bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def test_crafted_huge_header_is_refused_with_the_default_limit(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(crafted_png_header(50_000, 50_000))
    with pytest.raises(ImageLoadError, match="bomb.png.*decompression bomb"):
        load_image(bomb)


def test_bytes_and_labels(tmp_path):
    data = png_bytes(random_image(5))
    assert load_image(data).mode == "RGB"
    with pytest.raises(ImageLoadError, match="passage 7 image"):
        load_image(b"nope", label="passage 7 image")


def test_paths_that_are_not_files_say_what_they_are_without_being_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would block until a writer comes
    (tmp_path / "folder.jpg").mkdir()
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    cases = {tmp_path / "pipe.jpg": r"is a FIFO \(named pipe\)",
             tmp_path / "folder.jpg": "is a folder", "/dev/zero": "is a character device",
             tmp_path / "dangling.jpg": "broken symbolic link",
             tmp_path / "missing.jpg": "no such file"}
    for path, words in cases.items():
        with pytest.raises(ImageLoadError, match=words):
            load_image(path)

"""read_image / image_from_array: odd files become 8-bit RGB (or L) images, or a BadInputError naming file and problem."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import emotune.data.images as images
from emotune.data.images import image_from_array, read_image
from emotune.errors import BadInputError


def _noise_rgb(w: int = 64, h: int = 64, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _mode(path: Path) -> str:
    with Image.open(path) as im:
        return im.mode


def _bad(path: Path, *fragments: str, **kw) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        read_image(path, **kw)
    msg = str(info.value)
    assert path.name in msg and info.value.where == str(path)
    for frag in fragments:
        assert frag in msg.lower(), msg
    return info.value


# ---------------------------------------------------------------- files that must be refused


def test_missing_file(tmp_path):
    _bad(tmp_path / "nope.jpg", "not found")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _bad(p, "empty", "0 bytes")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 10)
    _bad(p, "not an image")


def test_truncated_jpeg(tmp_path):
    full = tmp_path / "full.jpg"
    _noise_rgb(96, 96).save(full, quality=95)
    read_image(full)  # the whole file is fine
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    _bad(cut, "truncated")


@pytest.mark.shared
def test_truncated_real_fer2013_jpeg(tmp_path, fer2013_dir):
    src = sorted((fer2013_dir / "train" / "happy").glob("*.jpg"))[0]
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _bad(cut, "truncated")


def test_folder_path(tmp_path):
    d = tmp_path / "looks_like.jpg"
    d.mkdir()
    _bad(d, "folder")


def test_size_limit_refuses_large_image(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("L", (40, 30), 7).save(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    err = _bad(p, "too large")
    assert "40x30" in str(err)
    monkeypatch.setattr(images, "MAX_PIXELS", 1200)
    assert read_image(p).size == (40, 30)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h 8-bit grey pixels but carries no pixel data (cheap to write, cheap to open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(20000, 20000))  # 400 Mpx claimed, ~50 bytes on disk
    _bad(p, "too large")


def test_pillow_global_limit_is_neither_changed_nor_used(tmp_path, monkeypatch):
    """The limit is read_image's, per call: Pillow's global (which would refuse a 108 MP photo at its default) does not
    apply, and reading restores it."""
    p = tmp_path / "big2.png"
    Image.new("L", (40, 30)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as if 1000 were Pillow's default
    assert read_image(p, max_pixels=2000).size == (40, 30)
    assert Image.MAX_IMAGE_PIXELS == 1000
    _bad(p, "too large", "--max-pixels", max_pixels=1000)
    assert read_image(p, max_pixels=0).size == (40, 30)  # 0: no limit


def test_importing_emotune_leaves_pillow_global_alone():
    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import emotune.data.images, emotune.inference.recognizer; "
            "assert Image.MAX_IMAGE_PIXELS == before, Image.MAX_IMAGE_PIXELS")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_108_megapixel_header_is_not_refused_under_the_predict_limit(tmp_path):
    """A 12000 x 9000 PNG header (no pixel data: cheap) passes the 200 MP limit and fails later, on its missing data."""
    p = tmp_path / "phone.png"
    p.write_bytes(_png_header_only(12000, 9000))
    err = _bad(p, "corrupt", max_pixels=200_000_000)
    assert "too large" not in str(err)
    _bad(p, "too large")  # read_image's own default (training data) is lower


# ---------------------------------------------------------------- files that must work


def _check_8bit(img: Image.Image, mode: str = "RGB") -> np.ndarray:
    assert img.mode == mode
    arr = np.asarray(img)
    assert arr.dtype == np.uint8
    assert arr.ndim == (3 if mode == "RGB" else 2)
    return arr


def test_grayscale_png(tmp_path):
    g = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) % 256
    p = tmp_path / "g.png"
    Image.fromarray(g.astype(np.uint8)).save(p)
    rgb = _check_8bit(read_image(p))
    assert rgb.shape == (48, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], g)
    np.testing.assert_array_equal(_check_8bit(read_image(p, channels="grayscale"), "L"), g)


def test_rgba_png_alpha_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 0)      # fully transparent red -> white background
    a[0, 1] = (0, 0, 255, 255)    # opaque blue stays blue
    a[1, 0] = (0, 0, 0, 128)      # half-transparent black -> mid grey
    a[1, 1] = (10, 20, 30, 255)
    p = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(p)
    rgb = _check_8bit(read_image(p))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (0, 0, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[1, 0])
    assert tuple(rgb[1, 1]) == (10, 20, 30)
    gray = _check_8bit(read_image(p, channels="grayscale"), "L")
    assert gray[0, 0] == 255


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * (254 * 3))  # index 0 black, index 1 red
    img.putpixel((1, 1), 1)
    p = tmp_path / "pal.png"
    img.save(p, transparency=0)  # index 0 (black) is transparent
    assert _mode(p) == "P"
    rgb = _check_8bit(read_image(p))
    assert tuple(rgb[0, 0]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(rgb[1, 1]) == (200, 0, 0)


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    a = np.array([[0, 65535], [32768, 257 * 100]], np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert _mode(p).startswith("I")  # really a 16-bit file
    gray = _check_8bit(read_image(p, channels="grayscale"), "L")
    np.testing.assert_array_equal(gray, [[0, 255], [128, 100]])
    rgb = _check_8bit(read_image(p))
    np.testing.assert_array_equal(rgb[:, :, 1], [[0, 255], [128, 100]])


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, quality=100)  # pure red in CMYK
    assert _mode(p) == "CMYK"
    rgb = _check_8bit(read_image(p))
    r, g, b = (int(v) for v in rgb[8, 8])
    assert r > 240 and g < 15 and b < 15


def test_exif_rotated_jpeg(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high
    a[:10, :10] = (255, 0, 0)            # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    Image.fromarray(a).save(p, exif=exif, quality=95)
    img = read_image(p)
    assert img.size == (20, 40)  # width/height swapped
    rgb = _check_8bit(img)
    assert rgb[3, 16, 0] > 200 and rgb[3, 16, 2] < 60   # top-left went to the top-right
    assert rgb[3, 3, 0] < 60


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(p) as im:
        assert im.n_frames == 3
    rgb = _check_8bit(read_image(p))
    assert rgb.shape == (6, 8, 3)
    assert tuple(rgb[2, 2]) == (255, 0, 0)


def test_one_pixel_image(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("L", (1, 1), 77).save(p)
    rgb = _check_8bit(read_image(p))
    assert rgb.shape == (1, 1, 3) and tuple(rgb[0, 0]) == (77, 77, 77)


def test_one_bit_bmp(tmp_path):
    img = Image.new("1", (8, 8), 0)
    img.putpixel((0, 0), 1)
    p = tmp_path / "bw.bmp"
    img.save(p)
    gray = _check_8bit(read_image(p, channels="grayscale"), "L")
    assert gray[0, 0] == 255 and gray[1, 1] == 0


def test_returned_image_outlives_the_file(tmp_path):
    p = tmp_path / "x.png"
    _noise_rgb(8, 8).save(p)
    img = read_image(p)
    p.unlink()
    assert np.asarray(img).shape == (8, 8, 3)


# ---------------------------------------------------------------- arrays


def test_array_uint8_gray():
    a = np.array([[0, 100], [200, 255]], np.uint8)
    rgb = _check_8bit(image_from_array(a))
    np.testing.assert_array_equal(rgb[:, :, 0], a)
    np.testing.assert_array_equal(_check_8bit(image_from_array(a, "grayscale"), "L"), a)
    np.testing.assert_array_equal(_check_8bit(image_from_array(a[:, :, None], "grayscale"), "L"), a)


def test_array_uint8_rgb_and_rgba():
    a = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_check_8bit(image_from_array(a)), a)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (0, 255, 0, 255)
    rgba[0, 1] = (0, 255, 0, 0)
    out = _check_8bit(image_from_array(rgba))
    assert tuple(out[0, 0]) == (0, 255, 0) and tuple(out[0, 1]) == (255, 255, 255)


def test_array_uint16_rescaled():
    a = np.array([[0, 65535], [32768, 257]], np.uint16)
    np.testing.assert_array_equal(_check_8bit(image_from_array(a, "grayscale"), "L"), [[0, 255], [128, 1]])


@pytest.mark.parametrize("arr, expected", [
    (np.array([[0.0, 1.0], [0.5, 0.25]], np.float32), [[0, 255], [128, 64]]),   # 0..1 floats
    (np.array([[0.0, 255.0], [128.0, 3.0]], np.float64), [[0, 255], [128, 3]]),  # 0..255 floats
])
def test_array_float(arr, expected):
    np.testing.assert_array_equal(_check_8bit(image_from_array(arr, "grayscale"), "L"), expected)
    assert _check_8bit(image_from_array(np.stack([arr] * 3, -1))).shape == (2, 2, 3)


@pytest.mark.parametrize("shape", [(10,), (4, 4, 2), (4, 4, 5), (0, 4), (2, 4, 4, 3)])
def test_array_bad_shape(shape):
    with pytest.raises(BadInputError) as info:
        image_from_array(np.zeros(shape, np.uint8), where="frame 12")
    assert info.value.where == "frame 12"
    assert str(shape) in str(info.value) and "not an image" in str(info.value)

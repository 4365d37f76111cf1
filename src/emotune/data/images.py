"""Robust image reading: every odd file a user has becomes a clean PIL image or a clear BadInputError."""
from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadInputError

# Images with more pixels than this are refused before decoding, as possible decompression bombs: the default of
# read_image (training and evaluation data are small); `emotune predict --max-pixels` passes its own (200 MP).
MAX_PIXELS = 64_000_000
_PIL_LIMIT_LOCK = threading.Lock()
_BOMB_HINT = "predict --max-pixels raises the limit, 0 removes it"


@contextlib.contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Pillow's own bomb check reads the global `Image.MAX_IMAGE_PIXELS` (a warning at ~89 MP, an error at twice
    that) during open, seek and load. emotune checks `img.size` against its per-call limit before decoding instead,
    so Pillow's is lifted only for the duration of one read (under a lock) and restored: importing emotune changes
    no global, and a 108 MP photo is not refused below the caller's limit."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float images are rescaled to 8 bits instead of clipped."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return img
    arr = arr.astype(np.float64)
    if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
        hi = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        arr = arr / hi * 255.0
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="L")


def normalize_mode(img: Image.Image, channels: str = "rgb") -> Image.Image:
    """Any PIL mode (1, L, LA, P, RGBA, CMYK, I;16, F...) to 8-bit RGB or L."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    want = "L" if channels in ("grayscale", "gray", "L") else "RGB"
    return img if img.mode == want else img.convert(want)


def read_image(path: str | Path, channels: str = "rgb", max_pixels: int | None = None) -> Image.Image:
    """Open, EXIF-rotate, decode fully (once) and convert an image; raise BadInputError naming the file.

    `max_pixels`: refuse larger images, checked from the header before any decoding (None: MAX_PIXELS; 0: no limit).
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "file not found")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    return _decode(path, path, channels, limit)


def read_image_bytes(data: bytes, where: str = "upload", channels: str = "rgb", max_pixels: int | None = None,
                     formats: tuple[str, ...] | None = None, hint: str = _BOMB_HINT) -> Image.Image:
    """`read_image` for bytes in memory (a server upload): the same checks and errors, nothing written to disk.
    `formats` limits the Pillow decoders tried (a server accepts a few common formats, not every plugin)."""
    if not data:
        raise BadInputError(where, "empty upload (0 bytes)")
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if formats:
        Image.init()  # register every plugin, so that `formats` can name any of them
        formats = tuple(f for f in formats if f in Image.OPEN)
    return _decode(io.BytesIO(data), where, channels, limit, formats, hint)


def _decode(source, where, channels: str, limit: int, formats: tuple[str, ...] | None = None, hint: str = _BOMB_HINT) -> Image.Image:
    try:
        with _pillow_limit_lifted(), Image.open(source, formats=formats) as img:
            w, h = img.size
            if limit and w * h > limit:
                raise BadInputError(where, f"image too large ({w}x{h} = {w * h:,} pixels > {limit:,}); refusing a possible "
                                           f"decompression bomb ({hint})")
            if w < 1 or h < 1:
                raise BadInputError(where, f"image has no pixels ({w}x{h})")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/PNG/WebP: use the first frame
            img.load()
            img = ImageOps.exif_transpose(img)
            return normalize_mode(img, channels)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(where, "not an image, or a format Pillow cannot read"
                            + (f" (accepted: {', '.join(formats)})" if formats else "")) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(where, f"corrupt or truncated image data ({exc})") from None


def image_from_array(arr: np.ndarray, channels: str = "rgb", where: str = "array") -> Image.Image:
    """A numpy array (HxW, HxWx1/3/4; uint8/uint16/float) to a PIL image in the wanted mode."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise BadInputError(where, f"array of shape {a.shape} is not an image (want HxW, HxWx3 or HxWx4)")
    if a.dtype != np.uint8:
        hi = 65535.0 if a.dtype == np.uint16 else (1.0 if a.max(initial=0) <= 1.0 else 255.0)
        a = np.clip(a.astype(np.float64) / hi * 255.0, 0, 255).round().astype(np.uint8)
    return normalize_mode(Image.fromarray(a), channels)

"""Image files: read any image as RGB or grayscale uint8, write PNGs atomically. Every reader and writer of
samlit (StaVer reader, predict, figures, the synthetic generator) goes through these."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samlit.core.atomic import write_bytes
from samlit.core.errors import SamlitError

# What samlit takes as an image file wherever it lists a folder (predict's image=<folder>, the COCO and image/label
# folder readers); OpenCV and Pillow both read each of these (BMP has no EXIF: it is read upright).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
EXIF_ORIENTATION = 0x0112  # 1 = upright; 5-8 swap width and height
_HAS_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")

# Pixel limits, decided here. Pixels are decoded by OpenCV, which reads at most OPENCV_MAX_PIXELS (its
# OPENCV_IO_MAX_IMAGE_PIXELS, 2**30 unless that variable is set before the process starts). Data sets get a lower,
# settable limit, data.max_image_pixels (MAX_IMAGE_PIXELS by default), checked from each file's header before
# anything is decoded (samlit.data.checks.image_size). Pillow only reads headers and label images here, always after
# one of these checks, so its own limit (a warning at 89 M px, DecompressionBombError at 179 M: it stopped a
# legitimate 14000 x 13000 scan with a traceback) is off.
_OPENCV_SETTING = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "").strip()
OPENCV_MAX_PIXELS = int(_OPENCV_SETTING) if _OPENCV_SETTING.isdigit() else 2**30
MAX_IMAGE_PIXELS = 300_000_000  # a 600-dpi A1 page (14032 x 19866 = 279 M px) fits; see image_memory
Image.MAX_IMAGE_PIXELS = None


def image_memory(pixels: int) -> str:
    """What an image of ``pixels`` px takes once read: 3 bytes a pixel as (H, W, 3) uint8 RGB, e.g. ``"0.51 GiB"``
    for 14000 x 13000 (182 M px), 0.84 GiB at ``MAX_IMAGE_PIXELS``, 3 GiB at OpenCV's 2**30. Reading it holds
    twice that for a moment (OpenCV's BGR image and its RGB copy); in the page frame each of its instance masks
    adds 1 byte a pixel ((N, H, W) bool)."""
    return f"{3 * pixels / 2**30:.2f} GiB"


def read_rgb(path: Path | str) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Grayscale, palette and 16-bit files are converted by OpenCV, which also applies an
    EXIF orientation; a file with transparency is composited over white (paper, not black). A file that is missing,
    over OpenCV's pixel limit or not decodable: one-line ``SamlitError`` naming it."""
    return cv2.cvtColor(_imread(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_gray(path: Path | str) -> np.ndarray:
    """(H, W) uint8, by the rules of ``read_rgb``."""
    return _imread(Path(path), cv2.IMREAD_GRAYSCALE)


def exif_orientation(image: Image.Image) -> int:
    """A PIL image's EXIF orientation (1 when it has none)."""
    return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)


def has_alpha(image: Image.Image) -> bool:
    """Whether a PIL image (header only) carries transparency."""
    return image.mode in _HAS_ALPHA or "transparency" in image.info


def _imread(path: Path, flags: int) -> np.ndarray:
    try:
        with Image.open(path) as header:
            alpha, orientation, (width, height) = has_alpha(header), exif_orientation(header), header.size
    except Exception:  # not an image Pillow knows (or a damaged header): OpenCV decides below
        alpha, orientation, width, height = False, 1, 0, 0
    if width * height > OPENCV_MAX_PIXELS:
        raise SamlitError(
            f"{path} is {width}x{height} px, more than OpenCV reads ({OPENCV_MAX_PIXELS} px; it would take "
            f"{image_memory(width * height)}): scale it down, or set OPENCV_IO_MAX_IMAGE_PIXELS before starting"
        )
    try:
        image = _over_white(path, flags, orientation) if alpha else cv2.imread(str(path), flags)
    except cv2.error as error:  # OpenCV's own size limits, a decoder that gave up
        raise SamlitError(f"{path} is not a readable image ({str(error).strip().splitlines()[-1]})") from None
    if image is None:
        problem = "is missing" if not path.exists() else "is not a readable image"
        raise SamlitError(f"{path} {problem}")
    return image


def _over_white(path: Path, flags: int, orientation: int) -> np.ndarray | None:
    """A file with transparency, composited over white, oriented as OpenCV would (BGR or gray uint8)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.ndim == 2:
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    if raw.shape[2] == 4:
        scale = float(np.iinfo(raw.dtype).max)
        color, alpha = raw[..., :3] / scale, raw[..., 3:] / scale
        raw = np.rint((color * alpha + (1 - alpha)) * 255)
    elif raw.dtype != np.uint8:
        raw = raw / (np.iinfo(raw.dtype).max / 255)
    image = _orient(np.ascontiguousarray(raw.astype(np.uint8)), orientation)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if flags == cv2.IMREAD_GRAYSCALE else image


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to a (H, W, C) array (as OpenCV's reader and PIL's exif_transpose do)."""
    turns = {1: (False, 0), 2: (True, 0), 3: (False, 2), 4: (True, 2), 5: (True, 1), 6: (False, 3)}
    turns |= {7: (True, 3), 8: (False, 1)}  # (mirror left-right first, then rotate 90 degrees CCW k times)
    mirror, k = turns.get(orientation, (False, 0))
    return np.ascontiguousarray(np.rot90(image[:, ::-1] if mirror else image, k))


def encode_png(image: np.ndarray) -> bytes:
    """(H, W) gray or (H, W, 3) RGB uint8 -> PNG bytes."""
    array = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", array)
    if not ok:
        raise SamlitError(f"cannot encode a {image.shape} {image.dtype} array as PNG")
    return png.tobytes()


def write_png(path: Path | str, image: np.ndarray) -> Path:
    """Write (H, W) gray or (H, W, 3) RGB uint8 ``image`` to ``path`` as a PNG, atomically."""
    return write_bytes(path, encode_png(image))

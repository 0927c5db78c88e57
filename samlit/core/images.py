"""Image files: read any image as RGB or grayscale uint8, write PNGs atomically. Every reader and writer of
samlit (StaVer reader, predict, figures, the synthetic generator) goes through these."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from samlit.core.atomic import write_bytes
from samlit.core.errors import SamlitError


def read_rgb(path: Path | str) -> np.ndarray:
    """(H, W, 3) uint8 RGB (grayscale, palette, RGBA and 16-bit files are converted by OpenCV)."""
    return cv2.cvtColor(_imread(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_gray(path: Path | str) -> np.ndarray:
    """(H, W) uint8."""
    return _imread(Path(path), cv2.IMREAD_GRAYSCALE)


def _imread(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        problem = "is missing" if not path.exists() else "is not a readable image"
        raise SamlitError(f"{path} {problem}")
    return image


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

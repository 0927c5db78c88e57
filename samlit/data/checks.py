"""Bad scans, found before anything big runs: a missing, empty, corrupt or non-image file, or ground truth of
another size than its scan. ``data.on_bad_file=skip`` (default) leaves the scan out with a warning and counts
it in the report; ``raise`` stops with one line. Both name the file(s) and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from samlit.core.errors import SamlitError
from samlit.core.images import exif_orientation

if TYPE_CHECKING:  # staver.py imports this module
    from samlit.data.staver import ScanFiles

log = logging.getLogger(__name__)
POLICIES = ("skip", "raise")
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class BadScan:
    key: str
    problem: str  # names the file(s)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header, as the reader will see it (after an EXIF orientation, which the reader
    applies), after checking the whole file's structure (``PIL.Image.verify``: chunk CRCs, truncation) without
    decoding the pixels. Raises ``ValueError`` naming the problem."""
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()  # must come first: reading the EXIF consumes the file
        orientation = _orientation(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's words for corrupt/truncated data
        raise ValueError(f"{path} is corrupt ({error})") from None
    return size[::-1] if orientation in ROTATED else size


def _orientation(path: Path) -> int:
    with Image.open(path) as image:
        return exif_orientation(image)


def scan_problem(files: ScanFiles) -> str | None:
    """What is wrong with a scan's three files, or ``None``."""
    try:
        sizes = {path: image_size(path) for path in (files.scan, files.pixel_gt, files.region_map)}
    except ValueError as error:
        return str(error)
    (w, h) = sizes[files.scan]
    for path in (files.pixel_gt, files.region_map):
        if sizes[path] != (w, h):
            w2, h2 = sizes[path]
            turned = [f"{p} carries EXIF orientation {o}" for p in (files.scan, path) if (o := _orientation(p)) > 1]
            note = f" ({'; '.join(turned)}, applied when read)" if turned else ""
            return f"size mismatch: scan {files.scan} is {w}x{h} px but {path} is {w2}x{h2} px{note}"
    return None


def check_scans(files: list[ScanFiles], *, on_bad_file: str) -> tuple[list[ScanFiles], list[BadScan]]:
    """Split ``files`` into good scans and bad ones, by ``data.on_bad_file`` (``skip`` | ``raise``)."""
    if on_bad_file not in POLICIES:
        raise SamlitError(f"data.on_bad_file={on_bad_file!r} must be one of {', '.join(POLICIES)}")
    good, bad = [], []
    for scan in files:
        problem = scan_problem(scan)
        if problem is None:
            good.append(scan)
        elif on_bad_file == "raise":
            raise SamlitError(f"{problem}; fix or remove scan {scan.key}, or pass data.on_bad_file=skip")
        else:
            log.warning("skipping scan %s: %s (data.on_bad_file=skip)", scan.key, problem)
            bad.append(BadScan(key=scan.key, problem=problem))
    return good, bad

"""Bad input files, found before anything big runs, and the one policy every source applies to them
(``data.on_bad_file``): ``skip`` (default) leaves the image out, warns about the first ``SHOWN`` bad files one by
one and counts the rest in one line (all of them are in ``metrics.json`` -> ``data.bad_files``); ``raise`` stops
with one line naming the first bad file and the fix. Each source finds its own problems (StaVer: a scan's three
files; COCO and folders: images, label images and annotations) and reports them through ``report_problems``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from samlit.core.errors import SamlitError
from samlit.core.images import exif_orientation

log = logging.getLogger(__name__)
POLICIES = ("skip", "raise")
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


SHOWN = 5  # bad files warned one by one; the rest are counted in one line (all of them are in metrics.json)


@dataclass(frozen=True)
class BadFile:
    """An image left out (``key``; ``"?"`` when the problem has no image, e.g. a stray annotation) and why
    (``problem``, naming the file(s))."""

    key: str
    problem: str


def check_policy(on_bad_file: str) -> None:
    """One line for a ``data.on_bad_file`` that is not a policy."""
    if on_bad_file not in POLICIES:
        raise SamlitError(f"data.on_bad_file={on_bad_file!r} must be one of {', '.join(POLICIES)}")


def report_problems(problems: list[BadFile], *, on_bad_file: str) -> None:
    """Warn about each of ``problems`` (the first ``SHOWN``, then a count), or raise the first one as one line
    with ``on_bad_file="raise"``."""
    check_policy(on_bad_file)
    if problems and on_bad_file == "raise":
        raise SamlitError(f"{problems[0].problem}; fix it, or pass data.on_bad_file=skip to leave it out")
    for bad in problems[:SHOWN]:
        log.warning("%s (data.on_bad_file=skip)", bad.problem)
    if len(problems) > SHOWN:
        log.warning("... and %d more left out (all of them: data.bad_files in metrics.json)", len(problems) - SHOWN)


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
        turned = orientation(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's words for corrupt/truncated data
        raise ValueError(f"{path} is corrupt ({error})") from None
    return size[::-1] if turned in ROTATED else size


def orientation(path: Path) -> int:
    """The EXIF orientation of an image file (1 = upright)."""
    with Image.open(path) as image:
        return exif_orientation(image)

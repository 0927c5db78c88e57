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
from samlit.core.images import MAX_IMAGE_PIXELS, exif_orientation, image_memory

log = logging.getLogger(__name__)
POLICIES = ("skip", "raise")
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


SHOWN = 5  # bad files warned one by one; the rest are counted in one line (all of them are in metrics.json)
VERIFIED = ("PNG",)  # formats whose structure Pillow's verify() checks without decoding the pixels
READ_AS_FAR_AS_IT_GOES = ("JPEG", "MPO")  # OpenCV reads a cut-off JPEG as far as it goes (grey below): not decoded


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


def image_size(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) as the reader will see it (after an EXIF orientation, which the reader applies), once the
    file is known to be readable: it opens (header), holds at most ``max_pixels`` pixels (``data.max_image_pixels``;
    what that takes in memory: ``samlit.core.images.image_memory``) and its data is whole. A PNG's structure is
    checked without decoding its pixels (``PIL.Image.verify``: chunk CRCs, truncation); other formats but JPEG are
    decoded once, since their header promises nothing about their data (a TIFF compressed with a codec that is not
    there); a JPEG is read as far as it goes. Whatever opening or reading the file raises (permission denied, a
    truncated file, an unknown codec, ...) becomes a ``ValueError`` naming the file and the reason."""
    try:
        if not path.is_file():
            raise _Bad(f"{path} is {'a folder, not an image' if path.is_dir() else 'missing'}")
        if path.stat().st_size == 0:
            raise _Bad(f"{path} is empty (0 bytes)")
        with Image.open(path) as image:
            (width, height), kind = image.size, image.format
            if width * height > max_pixels:
                raise _Bad(
                    f"{path} is {width}x{height} = {_pixels(width * height)}, over data.max_image_pixels="
                    f"{max_pixels}; it takes {image_memory(width * height)} once read: raise data.max_image_pixels"
                )
            try:
                if kind in VERIFIED:
                    image.verify()
                elif kind not in READ_AS_FAR_AS_IT_GOES:
                    image.load()
            except Exception as error:  # Pillow's words for corrupt, truncated or undecodable data
                what = "is corrupt (" if kind in VERIFIED else f"cannot be decoded ({_codec(image)}: "
                raise _Bad(f"{path} {what}{_reason(error)})") from None
        turned = orientation(path)  # after verify: reading the EXIF consumes the file
    except _Bad as problem:
        raise ValueError(str(problem)) from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image (none that Pillow can open)") from None
    except PermissionError as error:
        raise ValueError(f"{path} cannot be read ({error.strerror}): give this user read access") from None
    except Exception as error:  # anything else opening or reading it raises: never a traceback
        raise ValueError(f"{path} is corrupt ({_reason(error)})") from None
    return (height, width) if turned in ROTATED else (width, height)


class _Bad(Exception):
    """A problem ``image_size`` found itself (its message is the problem)."""


def _pixels(count: int) -> str:
    """``"182 M px"``, or ``"26112 px"`` below a million."""
    return f"{count / 1e6:.0f} M px" if count >= 10**6 else f"{count} px"


def _reason(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _codec(image: Image.Image) -> str:
    """``"TIFF, compression 'tiff_adobe_deflate'"``: the format, and the codec when the file names one."""
    codec = image.info.get("compression")
    return f"{image.format}, compression {codec!r}" if codec else str(image.format)


def orientation(path: Path) -> int:
    """The EXIF orientation of an image file (1 = upright)."""
    with Image.open(path) as image:
        return exif_orientation(image)

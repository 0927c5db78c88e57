"""Deterministic generator of document-like scans with stamps, written in the StaVer layout.

A page gets paper, text lines, a table and a signature; then 0-3 stamps (round / rect / oval; blue, red or
violet; rings, letters along the ring and inside, worn ink, rotated) are printed over it; then scanner
noise and a slight blur. The ground truth is exact: ``ink`` (the pixel GT) is where a stamp's ink is
opaque enough, ``regions`` (the region map) the filled stamp shapes. Stamps keep a gap between them, so
the connected components of the region map are exactly the stamps, and ink lies only inside regions.
"""

from __future__ import annotations

import itertools
import json
import math
import string
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from samlit.core.atomic import write_bytes
from samlit.core.errors import SamlitError
from samlit.core.images import write_png
from samlit.data.staver import MIN_REGION_AREA, ScanFiles, StaverSource

GENERATOR_VERSION = 1
MARKER_NAME = "synthetic.json"  # written last: the data set is complete
PARTIAL_MARKER_NAME = "synthetic.partial.json"  # written first: the directory is being generated
MIN_IMAGE_SIZE = 64
MAX_SCANS = 99_999  # keys are stampDS-00001 ... stampDS-99999
PAGE_ASPECT = 1.414  # A4 portrait: height / width

STAMP_COUNT_PROBS = (0.15, 0.45, 0.27, 0.13)  # P(0, 1, 2, 3 stamps)
STAMP_KINDS = ("round", "rect", "oval")
INK_COLORS = ((40, 70, 170), (190, 35, 45), (115, 45, 150))  # RGB: blue, red, violet
INK_THRESHOLD = 0.4  # ink opacity from which a pixel is stamp ink in the ground truth
MIN_STAMP_PX = 8.0  # smallest stamp diameter, so that tiny pages still have readable regions
PLACEMENT_TRIES = 30
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX)
STAMP_LETTERS = string.ascii_uppercase + string.digits
SHIFT = 4  # fractional bits of cv2 drawing coordinates
ONE = 1 << SHIFT


@dataclass
class SyntheticScan:
    """One generated page.

    image: (H, W, 3) uint8 RGB.
    ink: (H, W) bool, stamp ink only (not text).
    regions: (H, W) bool, union of the filled stamp regions.
    boxes: (N, 4) float32 xyxy (x0, y0, x0 + w, y0 + h) of each region's bounding rect, ordered by (y0, x0).
    """

    image: np.ndarray
    ink: np.ndarray
    regions: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class _Shape:
    """A stamp's geometry in pixels before rotation; the patch is square, centred on the stamp."""

    kind: str
    half_w: float  # semi-axis (round / oval) or half side (rect) of the outer ring's outer edge
    half_h: float
    angle: float  # degrees, counter-clockwise
    stroke: int  # ring thickness
    margin: int  # region beyond the outer ring
    radius: int  # patch half-size: holds the rotated region plus the gap to other stamps

    @property
    def size(self) -> int:
        return 2 * self.radius + 1


@dataclass
class _Stamp:
    """A rendered stamp in its (P, P) patch: alpha float32 ink opacity (0 outside the region), region bool."""

    alpha: np.ndarray
    region: np.ndarray
    color: np.ndarray  # (3,) float32 RGB in [0, 1]


def render_scan(*, rng: np.random.Generator, image_size: int) -> SyntheticScan:
    """Render one portrait page whose long side (height) is ``image_size`` px."""
    height, width = image_size, max(1, round(image_size / PAGE_ASPECT))
    page = _draw_document(rng, height, width).astype(np.float32) / 255
    gap = max(3, image_size // 256)
    ink = np.zeros((height, width), dtype=bool)
    regions = np.zeros((height, width), dtype=bool)
    boxes = []
    for _ in range(rng.choice(len(STAMP_COUNT_PROBS), p=STAMP_COUNT_PROBS)):
        stamp = _render_stamp(rng, page_width=width, gap=gap)
        corner = None if stamp is None else _find_free_spot(rng, stamp.region, regions, gap=gap)
        if stamp is None or corner is None:
            continue
        y, x = corner
        window = np.s_[y : y + stamp.region.shape[0], x : x + stamp.region.shape[1]]
        _print_ink(page[window], stamp)
        ink[window] |= stamp.alpha >= INK_THRESHOLD
        regions[window] |= stamp.region
        boxes.append(_bounding_box(stamp.region, x=x, y=y))
    image = _scanner_effects(rng, page, image_size=image_size)
    return SyntheticScan(image=image, ink=ink, regions=regions, boxes=_sorted_boxes(boxes))


def generate_synthetic_staver(*, root: Path | str, num_scans: int, image_size: int, seed: int) -> Path:
    """Write ``num_scans`` synthetic scans under ``root`` in the StaVer layout and return ``root``.

    Scan i (key ``stampDS-{i + 1:05d}``) is rendered from ``np.random.default_rng([seed, i])``, so it does
    not depend on ``num_scans``. Files are written atomically; the marker ``synthetic.json`` is written
    last. An existing matching marker means the data is already there (nothing is done).
    """
    root = Path(root)
    _check_arguments(num_scans=num_scans, image_size=image_size, seed=seed)
    params = {
        "generator_version": GENERATOR_VERSION,
        "num_scans": num_scans,
        "image_size": image_size,
        "seed": seed,
    }
    marker = root / MARKER_NAME
    if marker.exists():
        _check_marker(marker, params, root=root)
        return root
    _claim_directory(root, params)
    for i in range(num_scans):
        scan = render_scan(rng=np.random.default_rng([seed, i]), image_size=image_size)
        _write_scan(ScanFiles.for_key(root, f"stampDS-{i + 1:05d}"), scan)
    write_bytes(marker, _marker_bytes(params))
    (root / PARTIAL_MARKER_NAME).unlink(missing_ok=True)  # another process generating the same data may be first
    return root


# ---- the document under the stamps -------------------------------------------------------------------


def _draw_document(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB page: paper, a header, body text, a table and a signature."""
    paper = rng.uniform((238, 235, 225), (255, 255, 250))
    page = np.empty((height, width, 3), dtype=np.uint8)
    page[:] = np.round(paper).astype(np.uint8)
    left, right = 0.08 * width, 0.92 * width
    _draw_text_lines(page, rng, top=0.05 * height, bottom=0.14 * height, left=left, right=0.6 * right, line=0.022)
    _draw_text_lines(page, rng, top=0.18 * height, bottom=0.55 * height, left=left, right=right, line=0.014)
    _draw_table(page, rng, top=0.58 * height, bottom=0.8 * height, left=left, right=right)
    _draw_signature(page, rng, x=rng.uniform(0.5, 0.6) * width, y=0.88 * height, width=0.3 * width)
    return page


def _draw_text_lines(
    page: np.ndarray,
    rng: np.random.Generator,
    *,
    top: float,
    bottom: float,
    left: float,
    right: float,
    line: float,
) -> None:
    """Lines of random words between ``top`` and ``bottom``; ``line`` is the text height / page height."""
    text_height = max(1.0, rng.uniform(0.7, 1.3) * line * page.shape[0])
    font = int(rng.choice(FONTS))
    color = _dark_grey(rng)
    y = top + text_height
    while y < bottom:
        width = (right - left) * rng.uniform(0.4, 1.0)
        if text_height < 3:  # too small for glyphs: a scanned line of text is a grey streak
            streak = tuple(min(255, level + 80) for level in color)
            cv2.line(page, _point(left, y), _point(left + width, y), streak, 1, cv2.LINE_AA, SHIFT)
        else:
            text = _random_words(rng, n_chars=_chars_fitting(width, text_height, font))
            _put_text(page, text, x=left, y=y, height=text_height, font=font, color=color)
        y += text_height * rng.uniform(1.5, 2.0)


def _draw_table(
    page: np.ndarray, rng: np.random.Generator, *, top: float, bottom: float, left: float, right: float
) -> None:
    """A grid of rows x columns with a short word or number in each cell."""
    rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 6))
    widths = rng.uniform(0.5, 1.5, cols)
    xs = left + (right - left) * np.r_[0, np.cumsum(widths)] / widths.sum()
    ys = np.linspace(top, bottom, rows + 1)
    thickness = max(1, round(page.shape[0] / 800))
    color = _dark_grey(rng)
    for x in xs:
        cv2.line(page, _point(x, top), _point(x, bottom), color, thickness, cv2.LINE_AA, SHIFT)
    for y in ys:
        cv2.line(page, _point(left, y), _point(right, y), color, thickness, cv2.LINE_AA, SHIFT)
    text_height = max(1.0, min(0.4 * (ys[1] - ys[0]), 0.016 * page.shape[0]))
    font = int(rng.choice(FONTS))
    for x0, x1 in itertools.pairwise(xs):
        for y1 in ys[1:]:
            n_chars = min(int(rng.integers(2, 9)), _chars_fitting(0.8 * (x1 - x0), text_height, font))
            text = _random_words(rng, n_chars=n_chars, alphabet=string.digits + ".,")
            _put_text(
                page,
                text,
                x=x0 + 0.1 * (x1 - x0),
                y=y1 - 0.3 * (ys[1] - ys[0]),
                height=text_height,
                font=font,
                color=color,
            )


def _draw_signature(page: np.ndarray, rng: np.random.Generator, *, x: float, y: float, width: float) -> None:
    """A scribble: a line moving right with random loops and waves."""
    t = np.linspace(0, 1, 240)
    loops = rng.uniform(3, 8)
    loop_radius = rng.uniform(0.04, 0.1) * width
    swell = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 2 * np.pi))
    xs = x + width * t + swell * loop_radius * np.cos(2 * np.pi * loops * t + rng.uniform(0, 2 * np.pi))
    ys = y + swell * loop_radius * 1.5 * np.sin(2 * np.pi * loops * t) + 0.1 * width * np.sin(rng.uniform(1, 4) * t)
    points = np.round(np.stack([xs, ys], axis=1) * ONE).astype(np.int32)
    thickness = max(1, round(page.shape[0] / 500))
    color = (int(rng.integers(10, 60)), int(rng.integers(10, 60)), int(rng.integers(60, 140)))
    cv2.polylines(page, [points], False, color, thickness, cv2.LINE_AA, SHIFT)


def _dark_grey(rng: np.random.Generator) -> tuple[int, int, int]:
    level = int(rng.integers(0, 90))
    return (level, level, level)


# ---- stamps ------------------------------------------------------------------------------------------


def _render_stamp(rng: np.random.Generator, *, page_width: int, gap: int) -> _Stamp | None:
    """A rotated, worn stamp in its patch, or None when it is too small to keep ink and one region."""
    shape = _random_shape(rng, page_width=page_width, gap=gap)
    region = _rotate(_draw_region(shape), shape.angle) >= 0.5
    coverage = _rotate(_draw_ink(rng, shape), shape.angle) * region
    alpha = coverage * _wear(rng, shape.size)
    if not (alpha >= INK_THRESHOLD).any():  # wear erased a tiny stamp: print it fresh
        alpha = coverage
    if not (alpha >= INK_THRESHOLD).any() or not _is_one_region(region):
        return None
    color = np.array(INK_COLORS[rng.integers(len(INK_COLORS))], dtype=np.float32)
    color = np.clip(color + rng.uniform(-20, 20, 3), 0, 255).astype(np.float32) / 255
    return _Stamp(alpha=alpha, region=region, color=color)


def _random_shape(rng: np.random.Generator, *, page_width: int, gap: int) -> _Shape:
    kind = STAMP_KINDS[rng.integers(len(STAMP_KINDS))]
    diameter = max(MIN_STAMP_PX, rng.uniform(0.12, 0.30) * page_width)
    half_w = diameter / 2
    aspect = {"round": 1.0, "oval": rng.uniform(0.55, 0.8), "rect": rng.uniform(0.4, 0.75)}[kind]
    angle = rng.uniform(-180, 180) if kind == "round" else rng.uniform(-30, 30)
    margin = max(2, round(0.04 * diameter))
    radius = math.ceil(math.hypot(half_w + margin, half_w * aspect + margin)) + gap + 2
    return _Shape(
        kind=kind,
        half_w=half_w,
        half_h=half_w * aspect,
        angle=angle,
        stroke=max(1, round(0.025 * diameter)),
        margin=margin,
        radius=radius,
    )


def _draw_region(shape: _Shape) -> np.ndarray:
    """(P, P) uint8, 255 on the filled shape grown by the margin, axis-aligned."""
    region = np.zeros((shape.size, shape.size), dtype=np.uint8)
    half = (shape.half_w + shape.margin, shape.half_h + shape.margin)
    _draw_outline(region, shape.kind, center=shape.radius, half=half, thickness=-1, line_type=cv2.LINE_8)
    return region


def _draw_ink(rng: np.random.Generator, shape: _Shape) -> np.ndarray:
    """(P, P) uint8 ink coverage of the axis-aligned stamp: ring(s) and letters."""
    ink = np.zeros((shape.size, shape.size), dtype=np.uint8)
    if shape.kind == "rect":
        _draw_rect_stamp(ink, rng, shape)
    else:
        _draw_round_stamp(ink, rng, shape)
    return ink


def _draw_round_stamp(ink: np.ndarray, rng: np.random.Generator, shape: _Shape) -> None:
    """Outer ring, maybe an inner ring with letters along the band between them, a word in the middle."""
    c, s = shape.radius, shape.stroke
    outer = (shape.half_w - s / 2, shape.half_h - s / 2)
    _draw_outline(ink, shape.kind, center=c, half=outer, thickness=s)
    font = int(rng.choice(FONTS))
    inner_scale = rng.uniform(0.6, 0.75)
    band = (1 - inner_scale) * outer[1]
    if band >= 6 and rng.random() < 0.85:
        inner = (inner_scale * outer[0], inner_scale * outer[1])
        _draw_outline(ink, shape.kind, center=c, half=inner, thickness=max(1, s // 2))
        middle = ((outer[0] + inner[0]) / 2, (outer[1] + inner[1]) / 2)
        _draw_ring_text(ink, rng, center=c, half=middle, height=0.5 * band, font=font)
        outer = inner
    _draw_centered_lines(ink, rng, center=c, box=(1.2 * outer[0], 0.8 * outer[1]), font=font)


def _draw_rect_stamp(ink: np.ndarray, rng: np.random.Generator, shape: _Shape) -> None:
    """A border (sometimes doubled) around one to three centred lines of letters."""
    c, s = shape.radius, shape.stroke
    outer = (shape.half_w - s / 2, shape.half_h - s / 2)
    _draw_outline(ink, "rect", center=c, half=outer, thickness=s)
    inset = 2 * s + 1
    if min(outer) > 4 * inset and rng.random() < 0.5:
        outer = (outer[0] - inset, outer[1] - inset)
        _draw_outline(ink, "rect", center=c, half=outer, thickness=max(1, s // 2))
    box = (1.7 * outer[0], 1.6 * outer[1])
    _draw_centered_lines(ink, rng, center=c, box=box, font=int(rng.choice(FONTS)))


def _draw_outline(
    image: np.ndarray,
    kind: str,
    *,
    center: float,
    half: tuple[float, float],
    thickness: int,
    line_type: int = cv2.LINE_AA,
) -> None:
    """Ellipse (round / oval) or rectangle centred at (center, center); thickness -1 fills it."""
    if kind == "rect":
        top_left = _point(center - half[0], center - half[1])
        bottom_right = _point(center + half[0], center + half[1])
        cv2.rectangle(image, top_left, bottom_right, 255, thickness, line_type, SHIFT)
    else:
        axes = (round(half[0] * ONE), round(half[1] * ONE))
        cv2.ellipse(image, _point(center, center), axes, 0, 0, 360, 255, thickness, line_type, SHIFT)


def _draw_ring_text(
    ink: np.ndarray,
    rng: np.random.Generator,
    *,
    center: float,
    half: tuple[float, float],
    height: float,
    font: int,
) -> None:
    """Letters on the ellipse ``half``, tops outward, evenly spaced by arc length around the top."""
    scale, thickness = _font_scale(font, height), max(1, round(height / 8))
    (letter_width, _), _ = cv2.getTextSize("M", font, scale, thickness)
    phi = np.linspace(-1.5 * np.pi, 0.5 * np.pi, 721)  # the top of the ellipse is phi = -pi/2, index 360
    xs, ys = half[0] * np.cos(phi), half[1] * np.sin(phi)
    arc = np.r_[0, np.cumsum(np.hypot(np.diff(xs), np.diff(ys)))]
    arc -= arc[360]
    spacing = 1.3 * letter_width
    count = int(rng.uniform(0.5, 0.95) * arc[-1] / spacing)
    for position in (np.arange(count) - (count - 1) / 2) * spacing:
        p = np.interp(position, arc, phi)
        normal = math.degrees(math.atan2(half[0] * math.sin(p), half[1] * math.cos(p)))
        letter = STAMP_LETTERS[rng.integers(len(STAMP_LETTERS))]
        glyph = _glyph(letter, font=font, scale=scale, thickness=thickness, angle=-(normal + 90))
        x, y = center + half[0] * math.cos(p), center + half[1] * math.sin(p)
        _paste_max(ink, glyph, x=round(x) - glyph.shape[1] // 2, y=round(y) - glyph.shape[0] // 2)


def _draw_centered_lines(
    ink: np.ndarray, rng: np.random.Generator, *, center: float, box: tuple[float, float], font: int
) -> None:
    """One to three lines of letters centred at (center, center), each fitted into ``box`` (w, h)."""
    lines = int(rng.integers(1, 4))
    row = box[1] / lines
    for i in range(lines):
        text = _random_words(rng, n_chars=int(rng.integers(3, 9)), alphabet=STAMP_LETTERS)
        scale = _font_scale(font, 0.6 * row)
        thickness = max(1, round(0.6 * row / 8))
        (w, _), _ = cv2.getTextSize(text, font, scale, thickness)
        scale *= min(1.0, box[0] / max(w, 1))
        (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
        y = center - box[1] / 2 + (i + 0.5) * row + h / 2
        cv2.putText(ink, text, (round(center - w / 2), round(y)), font, scale, 255, thickness, cv2.LINE_AA)


def _glyph(letter: str, *, font: int, scale: float, thickness: int, angle: float) -> np.ndarray:
    """(S, S) uint8 patch with ``letter`` centred and rotated by ``angle`` degrees counter-clockwise."""
    (w, h), baseline = cv2.getTextSize(letter, font, scale, thickness)
    size = math.ceil(math.hypot(w, h + baseline)) + 2
    glyph = np.zeros((size, size), dtype=np.uint8)
    bottom_left = (round((size - w) / 2), round((size + h) / 2))
    cv2.putText(glyph, letter, bottom_left, font, scale, 255, thickness, cv2.LINE_AA)
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    return cv2.warpAffine(glyph, rotation, (size, size), flags=cv2.INTER_LINEAR)


def _wear(rng: np.random.Generator, size: int) -> np.ndarray:
    """(P, P) float32 ink opacity in [0, 1]: uneven inking, worn blotches and speckles."""
    blotches = cv2.resize(rng.random((5, 5), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    opacity = rng.uniform(0.75, 1.0) * (1 - rng.uniform(0.0, 0.8) * np.clip(blotches, 0, 1))
    speckles = rng.random((size, size), dtype=np.float32) >= rng.uniform(0.0, 0.15)
    return opacity * speckles


def _paste_max(canvas: np.ndarray, patch: np.ndarray, *, x: int, y: int) -> None:
    """Max-blend ``patch`` into ``canvas`` with its top-left corner at (x, y); clipped to the canvas."""
    height, width = patch.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, canvas.shape[1]), min(y + height, canvas.shape[0])
    if x0 < x1 and y0 < y1:
        window = canvas[y0:y1, x0:x1]
        np.maximum(window, patch[y0 - y : y1 - y, x0 - x : x1 - x], out=window)


def _rotate(patch: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a square uint8 patch about its centre; returns float32 in [0, 1]."""
    size = patch.shape[0]
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    return cv2.warpAffine(patch, rotation, (size, size), flags=cv2.INTER_LINEAR).astype(np.float32) / 255


def _is_one_region(region: np.ndarray) -> bool:
    """True if the region is one 8-connected component the reader will keep (area >= its minimum)."""
    count, _ = cv2.connectedComponents(region.view(np.uint8), connectivity=8)
    return count == 2 and int(region.sum()) >= MIN_REGION_AREA


def _find_free_spot(
    rng: np.random.Generator, region: np.ndarray, taken: np.ndarray, *, gap: int
) -> tuple[int, int] | None:
    """Top-left corner (y, x) for the patch where the region stays ``gap`` px away from ``taken``."""
    size = region.shape[0]
    height, width = taken.shape
    if size > height or size > width:
        return None
    kernel = np.ones((2 * gap + 1, 2 * gap + 1), dtype=np.uint8)
    keep_out = cv2.dilate(region.view(np.uint8), kernel).astype(bool)
    for _ in range(PLACEMENT_TRIES):
        y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        if not (taken[y : y + size, x : x + size] & keep_out).any():
            return y, x
    return None


def _print_ink(page: np.ndarray, stamp: _Stamp) -> None:
    """Multiply the stamp's colour into the (P, P, 3) float page window (ink over text stays dark)."""
    page *= 1 - stamp.alpha[..., None] * (1 - stamp.color)


def _bounding_box(region: np.ndarray, *, x: int, y: int) -> list[int]:
    """xyxy of the region's bounding rect in page pixels (x0, y0, x0 + w, y0 + h)."""
    ys, xs = np.nonzero(region)
    return [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]


def _sorted_boxes(boxes: list[list[int]]) -> np.ndarray:
    """(N, 4) float32, ordered by (y0, x0) like the reader."""
    array = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return array[np.lexsort((array[:, 0], array[:, 1]))]


# ---- the scanner -------------------------------------------------------------------------------------


def _scanner_effects(rng: np.random.Generator, page: np.ndarray, *, image_size: int) -> np.ndarray:
    """(H, W, 3) float page in [0, 1] -> uint8 RGB with sensor noise (grey, cheap) and a slight blur."""
    noise = rng.standard_normal((*page.shape[:2], 1), dtype=np.float32)
    page += noise * np.float32(rng.uniform(0.01, 0.03))
    sigma = rng.uniform(0.3, 0.8) * max(1.0, image_size / 1024)
    page = cv2.GaussianBlur(page, (0, 0), sigmaX=sigma)
    np.clip(page * 255 + 0.5, 0, 255, out=page)
    return page.astype(np.uint8)


# ---- text helpers ------------------------------------------------------------------------------------


def _random_words(rng: np.random.Generator, *, n_chars: int, alphabet: str = string.ascii_lowercase) -> str:
    """``n_chars`` random characters from ``alphabet`` with a space every 2-9 characters."""
    chars = [alphabet[i] for i in rng.integers(len(alphabet), size=max(1, n_chars))]
    for i in range(int(rng.integers(2, 10)), len(chars) - 1, int(rng.integers(3, 10))):
        chars[i] = " "
    return "".join(chars)


def _font_scale(font: int, height: float) -> float:
    """cv2 font scale whose capital letters are ``height`` px tall."""
    (_, capital_height), _ = cv2.getTextSize("X", font, 1.0, 1)
    return max(height, 1.0) / capital_height


def _chars_fitting(width: float, height: float, font: int) -> int:
    """About how many characters of ``height`` px fit in ``width`` px."""
    (sample_width, _), _ = cv2.getTextSize("abcdefghij", font, _font_scale(font, height), 1)
    return max(1, int(10 * width / max(sample_width, 1)))


def _put_text(
    page: np.ndarray, text: str, *, x: float, y: float, height: float, font: int, color: tuple[int, int, int]
) -> None:
    """Text with its baseline at ``y``; capitals ``height`` px tall."""
    thickness = max(1, round(height / 10))
    cv2.putText(page, text, (round(x), round(y)), font, _font_scale(font, height), color, thickness, cv2.LINE_AA)


def _point(x: float, y: float) -> tuple[int, int]:
    """cv2 drawing coordinates with SHIFT fractional bits."""
    return round(x * ONE), round(y * ONE)


# ---- files -------------------------------------------------------------------------------------------


def _check_arguments(*, num_scans: int, image_size: int, seed: int) -> None:
    """Config keys as named in conf/data/synthetic.yaml."""
    if not 1 <= num_scans <= MAX_SCANS:
        raise SamlitError(f"data.num_scans={num_scans} must be in [1, {MAX_SCANS}]")
    if image_size < MIN_IMAGE_SIZE:
        raise SamlitError(f"data.image_size={image_size} must be at least {MIN_IMAGE_SIZE} px")
    if seed < 0:
        raise SamlitError(f"data.synthetic_seed={seed} must be >= 0")


def _check_marker(marker: Path, params: dict[str, int], *, root: Path) -> None:
    """Raise unless the marker records exactly ``params``."""
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError):
        found = "an unreadable marker"
    if found != params:
        raise SamlitError(
            f"{root} holds other synthetic data ({marker}: {found}, wanted {params}); "
            "delete that directory or choose another data.root"
        )


def _claim_directory(root: Path, params: dict[str, int]) -> None:
    """Create ``root`` (or resume an interrupted run with the same params) and mark it as being generated.

    A non-empty directory without our markers may hold real data: refuse to write into it.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SamlitError(f"cannot create synthetic data directory {root}: {error}") from error
    partial = root / PARTIAL_MARKER_NAME
    if partial.exists():
        _check_marker(partial, params, root=root)
    elif any(root.iterdir()):
        raise SamlitError(
            f"{root} is not empty and has no {MARKER_NAME}: refusing to write synthetic scans over it; "
            "choose an empty or new data.root"
        )
    write_bytes(partial, _marker_bytes(params))


def _marker_bytes(params: dict[str, int]) -> bytes:
    return (json.dumps(params, indent=2, sort_keys=True) + "\n").encode()


def _write_scan(files: ScanFiles, scan: SyntheticScan) -> None:
    """The scan (RGB PNG) and its ground truths (grayscale PNG: ink / region 0, rest 255)."""
    write_png(files.scan, scan.image)
    write_png(files.pixel_gt, np.where(scan.ink, 0, 255).astype(np.uint8))
    write_png(files.region_map, np.where(scan.regions, 0, 255).astype(np.uint8))


class SyntheticSource(StaverSource):
    """``data=synthetic``: a ``StaverSource`` over scans this source generates itself (``prepare``: written once
    under ``root`` by ``generate_synthetic_staver``, then reused).

    Args:
        root: where the scans go. num_scans: how many. image_size: a scan's long side, px. seed: what is generated
        (the split is ``data.seed``'s). min_area: as ``StaverSource``.
    """

    def __init__(
        self, *, root: Path | str, num_scans: int = 48, image_size: int = 512, seed: int = 0, min_area: int = 16
    ) -> None:
        super().__init__(root=root, min_area=min_area)
        self.num_scans, self.image_size, self.seed = num_scans, image_size, seed

    def prepare(self) -> None:
        generate_synthetic_staver(root=self.root, num_scans=self.num_scans, image_size=self.image_size, seed=self.seed)

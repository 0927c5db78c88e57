"""Reader of the StaVer layout: scans, pixel ground truth (stamp ink) and region maps (filled stamps).

```
<root>/scans/scans/stampDS-00001.png                                RGB scan
<root>/ground-truth-pixel/ground-truth-pixel/stampDS-00001-px.png   grayscale, stamp ink = 0, rest = 255
<root>/ground-truth-maps/ground-truth-maps/stampDS-00001-gt.png     grayscale, stamp regions filled
```

A stamp's ink is many small strokes, so stamps come from the region map: each 8-connected region is one
stamp, its box is the region's bounding rectangle and its instance mask is the ink inside the region.
The polarity of both ground-truth images is detected (background = majority value), not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from samlit.core.errors import SamlitError
from samlit.core.images import read_gray, read_rgb

SCANS_DIR = Path("scans", "scans")
PIXEL_GT_DIR = Path("ground-truth-pixel", "ground-truth-pixel")
REGION_MAP_DIR = Path("ground-truth-maps", "ground-truth-maps")
MIN_REGION_AREA = 16  # px; smaller components of a region map are scan noise, not stamps

LAYOUT_HINT = (
    "expected the StaVer layout <root>/scans/scans/<key>.png with "
    "<root>/ground-truth-pixel/ground-truth-pixel/<key>-px.png and "
    "<root>/ground-truth-maps/ground-truth-maps/<key>-gt.png"
)


@dataclass(frozen=True)
class ScanFiles:
    """The three files of one scan, e.g. key ``stampDS-00001``."""

    key: str
    scan: Path
    pixel_gt: Path
    region_map: Path

    @classmethod
    def for_key(cls, root: Path | str, key: str) -> ScanFiles:
        """Where the files of ``key`` live under ``root`` (whether or not they exist)."""
        root = Path(root)
        return cls(
            key=key,
            scan=root / SCANS_DIR / f"{key}.png",
            pixel_gt=root / PIXEL_GT_DIR / f"{key}-px.png",
            region_map=root / REGION_MAP_DIR / f"{key}-gt.png",
        )


@dataclass
class StampSample:
    """One scan with its stamps.

    image: (H, W, 3) uint8 RGB.
    masks: (N, H, W) bool, one instance per stamp: the ink pixels inside the stamp's region.
    boxes: (N, 4) float32 xyxy in pixels, the regions' bounding rectangles (x0, y0, x0 + w, y0 + h).
    """

    key: str
    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


def find_scans(root: Path | str) -> list[ScanFiles]:
    """All scans under ``root``, sorted by key (their ground truth is checked by ``samlit.data.checks``)."""
    root = Path(root)
    if not root.is_dir():
        problem = "does not exist" if not root.exists() else "is not a directory"
        raise SamlitError(f"data root {root} {problem}; {LAYOUT_HINT}")
    scan_dir = root / SCANS_DIR
    scan_paths = sorted(scan_dir.glob("*.png")) if scan_dir.is_dir() else []
    keys = sorted(path.stem for path in scan_paths if not path.name.startswith("."))
    if not keys:
        raise SamlitError(f"data root {root} holds no scans (no {scan_dir}/*.png); {LAYOUT_HINT}")
    return [ScanFiles.for_key(root, key) for key in keys]


def read_regions(path: Path | str, *, min_area: int = MIN_REGION_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of a region map file: (labels (H, W) int32, 0 = background, 1..N; boxes (N, 4) float32 xyxy)."""
    return label_regions(read_gray(Path(path)), min_area=min_area)


def label_regions(region_map: np.ndarray, *, min_area: int = MIN_REGION_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Label the 8-connected foreground regions of a (H, W) uint8 map, ordered by (y0, x0).

    Components smaller than ``min_area`` pixels are dropped (label 0). Returns labels (H, W) int32 and
    boxes (N, 4) float32 ``x0, y0, x0 + w, y0 + h`` from ``cv2.connectedComponentsWithStats``.
    """
    foreground = detect_foreground(region_map).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8, ltype=cv2.CV_32S)
    stats = stats[1:]  # row 0 is the background
    kept = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    top, left = stats[kept, cv2.CC_STAT_TOP], stats[kept, cv2.CC_STAT_LEFT]
    order = kept[np.lexsort((left, top))]  # stable: ties keep raster order
    relabel = np.zeros(count, dtype=np.int32)
    relabel[order + 1] = np.arange(1, len(order) + 1, dtype=np.int32)
    x, y, w, h = stats[order, :4].T
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    return relabel[labels], boxes


def detect_foreground(gray: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that differ from the background, the majority value (ties: the brighter one).

    An image that is all one value has no foreground.
    """
    counts = np.bincount(gray.ravel(), minlength=256)
    background = len(counts) - 1 - int(np.argmax(counts[::-1]))
    return gray != background


def read_scan(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> StampSample:
    """Read one scan: image (H, W, 3) RGB, masks (N, H, W) = ink & region i, boxes (N, 4) of the regions."""
    image = read_rgb(files.scan)
    pixel_gt = read_gray(files.pixel_gt)
    region_map = read_gray(files.region_map)
    for path, other in ((files.pixel_gt, pixel_gt), (files.region_map, region_map)):
        _check_same_size(files.scan, image, path, other)
    labels, boxes = label_regions(region_map, min_area=min_region_area)
    ink = detect_foreground(pixel_gt)
    ids = np.arange(1, len(boxes) + 1, dtype=np.int32)[:, None, None]
    masks = ink[None] & (labels[None] == ids)
    return StampSample(key=files.key, image=image, masks=masks, boxes=boxes)


def with_ink(sample: StampSample) -> StampSample:
    """``sample`` without its stamp regions that hold no ink (nothing to learn, nothing to score)."""
    keep = sample.masks.any(axis=(1, 2)) if sample.masks.ndim == 3 else np.zeros(0, bool)  # also with no stamp left
    return StampSample(key=sample.key, image=sample.image, masks=sample.masks[keep], boxes=sample.boxes[keep])


@dataclass(frozen=True)
class StampCensus:
    """A scan's regions: ``stamps`` (at least ``min_region_area`` px, with ink: trained on and scored),
    ``without_ink`` (big enough, but no ink inside: left out) and ``below_min_area`` (specks: left out)."""

    stamps: int
    without_ink: int
    below_min_area: int


def stamp_census(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> StampCensus:
    """Count a scan's regions by kind, from its region map and pixel ground truth (no RGB decode)."""
    region_map = read_gray(files.region_map)
    pixel_gt = read_gray(files.pixel_gt)
    _check_same_size(files.region_map, region_map, files.pixel_gt, pixel_gt)
    labels, boxes = label_regions(region_map, min_area=min_region_area)
    components = cv2.connectedComponents(detect_foreground(region_map).view(np.uint8), connectivity=8)[0] - 1
    inked = np.unique(labels[detect_foreground(pixel_gt) & (labels > 0)])
    return StampCensus(stamps=len(inked), without_ink=len(boxes) - len(inked), below_min_area=components - len(boxes))


def count_stamps(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> int:
    """Number of stamps with ink of a scan (see ``stamp_census``)."""
    return stamp_census(files, min_region_area=min_region_area).stamps


def _check_same_size(scan: Path, image: np.ndarray, path: Path, other: np.ndarray) -> None:
    if image.shape[:2] != other.shape[:2]:
        (h, w), (h2, w2) = image.shape[:2], other.shape[:2]
        raise SamlitError(f"size mismatch: {scan} is {w}x{h} px but {path} is {w2}x{h2} px")

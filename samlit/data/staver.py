"""Reader of the StaVer layout: scans, pixel ground truth (stamp ink) and region maps (filled stamps).

```
<root>/scans/scans/stampDS-00001.png                                RGB scan
<root>/ground-truth-pixel/ground-truth-pixel/stampDS-00001-px.png   grayscale, stamp ink = 0, rest = 255
<root>/ground-truth-maps/ground-truth-maps/stampDS-00001-gt.png     grayscale, stamp regions filled
```

A stamp's ink is many small strokes, so stamps come from the region map: each 8-connected region is one
stamp, its box is the region's bounding rectangle and its instance mask is the ink inside the region.
Both ground-truth images go through ``samlit.data.ground_truth``: polarity from the border, a threshold for
grey (JPEG, anti-aliased) pixels, outline-only regions filled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samlit.core.errors import SamlitError
from samlit.core.images import MAX_IMAGE_PIXELS, read_gray, read_rgb
from samlit.data.checks import BadFile, check_policy, image_size, orientation, report_problems
from samlit.data.ground_truth import fill_holes, foreground
from samlit.data.sample import InstanceCensus, InstanceSample

SCANS_DIR = Path("scans", "scans")
PIXEL_GT_DIR = Path("ground-truth-pixel", "ground-truth-pixel")
REGION_MAP_DIR = Path("ground-truth-maps", "ground-truth-maps")
log = logging.getLogger(__name__)
OUTLINE_SHARE = 0.5  # a region map whose hole filling added over half of its regions' area is outline-only
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


def stray_files(root: Path | str, keys: Iterable[str]) -> list[str]:
    """Every file in the layout's three folders that is not one of the scans ``keys`` or their ground truth, as
    ``"<path>: <why it is not used>"`` (nothing in a data folder is left out silently)."""
    root, keys = Path(root), set(keys)
    expected = {
        SCANS_DIR: (lambda name: name.endswith(".png") and name[:-4] in keys, "not a .png scan"),
        PIXEL_GT_DIR: (lambda name: name.endswith("-px.png") and name[:-7] in keys, "no scan <key>.png for it"),
        REGION_MAP_DIR: (lambda name: name.endswith("-gt.png") and name[:-7] in keys, "no scan <key>.png for it"),
    }
    stray = []
    for folder, (used, why) in expected.items():
        if (root / folder).is_dir():
            for path in sorted((root / folder).iterdir()):
                if path.is_dir():
                    stray.append(f"{path}: a folder (the layout has none here)")
                elif not used(path.name):
                    stray.append(f"{path}: {'a hidden file' if path.name.startswith('.') else why}")
    return stray


def read_regions(path: Path | str, *, min_area: int = MIN_REGION_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of a region map file: (labels (H, W) int32, 0 = background, 1..N; boxes (N, 4) float32 xyxy)."""
    return label_regions(read_gray(Path(path)), min_area=min_area)


def label_regions(region_map: np.ndarray, *, min_area: int = MIN_REGION_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Label the 8-connected foreground regions of a (H, W) uint8 map (holes filled), ordered by (y0, x0).

    Components smaller than ``min_area`` pixels are dropped (label 0). Returns labels (H, W) int32 and
    boxes (N, 4) float32 ``x0, y0, x0 + w, y0 + h`` from ``cv2.connectedComponentsWithStats``.
    """
    return _label(fill_holes(foreground(region_map).mask)[0], min_area=min_area)


def _label(regions: np.ndarray, *, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(regions.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    stats = stats[1:]  # row 0 is the background
    kept = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    top, left = stats[kept, cv2.CC_STAT_TOP], stats[kept, cv2.CC_STAT_LEFT]
    order = kept[np.lexsort((left, top))]  # stable: ties keep raster order
    relabel = np.zeros(count, dtype=np.int32)
    relabel[order + 1] = np.arange(1, len(order) + 1, dtype=np.int32)
    x, y, w, h = stats[order, :4].T
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    return relabel[labels], boxes


def read_scan(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> InstanceSample:
    """Read one scan: image (H, W, 3) RGB, masks (N, H, W) = ink & region i, boxes (N, 4) of the regions."""
    image = read_rgb(files.scan)
    pixel_gt = read_gray(files.pixel_gt)
    region_map = read_gray(files.region_map)
    for path, other in ((files.pixel_gt, pixel_gt), (files.region_map, region_map)):
        _check_same_size(files.scan, image, path, other)
    labels, boxes = label_regions(region_map, min_area=min_region_area)
    ink = foreground(pixel_gt).mask
    ids = np.arange(1, len(boxes) + 1, dtype=np.int32)[:, None, None]
    masks = ink[None] & (labels[None] == ids)
    return InstanceSample(key=files.key, image=image, masks=masks, boxes=boxes)


def stamp_census(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> InstanceCensus:
    """Count a scan's regions by kind, from its region map and pixel ground truth (no RGB decode)."""
    region_map = read_gray(files.region_map)
    pixel_gt = read_gray(files.pixel_gt)
    _check_same_size(files.region_map, region_map, files.pixel_gt, pixel_gt)
    regions, ink = foreground(region_map), foreground(pixel_gt)
    filled, outline_share = fill_holes(regions.mask)
    labels, boxes = _label(filled, min_area=min_region_area)
    components = cv2.connectedComponents(filled.view(np.uint8), connectivity=8)[0] - 1
    inked = np.unique(labels[ink.mask & (labels > 0)])
    return InstanceCensus(
        instances=len(inked),
        without_ink=len(boxes) - len(inked),
        below_min_area=components - len(boxes),
        grey_share={str(files.region_map): regions.grey_share, str(files.pixel_gt): ink.grey_share},
        outline_share=outline_share,
    )


GREY_HINT = "save ground truth as PNG holding two values only (not JPEG, not anti-aliased)"


def ground_truth_counts(census: Iterable[InstanceCensus]) -> dict[str, int]:
    """For the report: ground-truth files that were not binary (thresholded) and region maps whose regions were
    mostly outlines (filled)."""
    census = list(census)
    return {
        "ground_truth_thresholded": sum(share > 0 for c in census for share in c.grey_share.values()),
        "region_maps_filled": sum(c.outline_share > OUTLINE_SHARE for c in census),
    }


def warn_ground_truth(census: Iterable[InstanceCensus]) -> None:
    """One warning per kind for the whole data set (not per file): ground truth that was not binary, region
    maps that were outline-only. Both name an example file and the share seen."""
    census = list(census)
    grey = {path: share for c in census for path, share in c.grey_share.items() if share > 0}
    if grey:
        worst = max(grey, key=grey.get)
        log.warning(
            "ground truth is not binary in %d of %d files (up to %.1f%% grey pixels, in %s): each was thresholded "
            "at Otsu's level between ink and background, so masks may differ from what was meant; %s",
            len(grey), 2 * len(census), 100 * grey[worst], worst, GREY_HINT,
        )  # fmt: skip
    outlines = [c for c in census if c.outline_share > OUTLINE_SHARE]
    if outlines:
        log.warning(
            "%d of %d region maps hold stamp outlines, not filled stamps (%.0f%% of a region filled in): each "
            "outline was filled, so the ink inside it belongs to its stamp",
            len(outlines), len(census), 100 * max(c.outline_share for c in outlines),
        )  # fmt: skip


def count_stamps(files: ScanFiles, *, min_region_area: int = MIN_REGION_AREA) -> int:
    """Number of stamps with ink of a scan (see ``stamp_census``)."""
    return stamp_census(files, min_region_area=min_region_area).instances


def _check_same_size(scan: Path, image: np.ndarray, path: Path, other: np.ndarray) -> None:
    if image.shape[:2] != other.shape[:2]:
        (h, w), (h2, w2) = image.shape[:2], other.shape[:2]
        raise SamlitError(f"size mismatch: {scan} is {w}x{h} px but {path} is {w2}x{h2} px")


def scan_problem(files: ScanFiles, *, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """What is wrong with a scan's three files (``samlit.data.checks.image_size``), or ``None``."""
    try:
        sizes = {
            path: image_size(path, max_pixels=max_pixels) for path in (files.scan, files.pixel_gt, files.region_map)
        }
    except ValueError as error:
        return str(error)
    (w, h) = sizes[files.scan]
    for path in (files.pixel_gt, files.region_map):
        if sizes[path] != (w, h):
            w2, h2 = sizes[path]
            turned = [f"{p} carries EXIF orientation {o}" for p in (files.scan, path) if (o := orientation(p)) > 1]
            note = f" ({'; '.join(turned)}, applied when read)" if turned else ""
            return f"size mismatch: scan {files.scan} is {w}x{h} px but {path} is {w2}x{h2} px{note}"
    return None


def check_scans(
    files: list[ScanFiles], *, on_bad_file: str, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[list[ScanFiles], list[BadFile]]:
    """Split ``files`` into good scans and bad ones, by ``data.on_bad_file`` (``skip`` | ``raise``,
    ``samlit.data.checks.report_problems``); a file over ``max_pixels`` pixels is a bad one."""
    check_policy(on_bad_file)
    good, bad = [], []
    for scan in files:
        problem = scan_problem(scan, max_pixels=max_pixels)
        if problem is None:
            good.append(scan)
        else:
            bad.append(BadFile(key=scan.key, problem=f"scan {scan.key}: {problem}"))
            if on_bad_file == "raise":
                break
    report_problems(bad, on_bad_file=on_bad_file)
    return good, bad


class StaverSource:
    """``Source`` over the StaVer layout under ``root``: records are ``ScanFiles``; a stamp is a region of the
    region map with ink, its box the region's box (a stamp's ink is many strokes)."""

    def __init__(self, *, root: Path | str | None, min_area: int = MIN_REGION_AREA) -> None:
        if root is None or not str(root).strip():
            raise SamlitError(
                "data.root is not set: pass data.root=/path/to/staver, the folder that holds scans/scans/<id>.png, "
                "ground-truth-pixel/ground-truth-pixel/<id>-px.png and ground-truth-maps/ground-truth-maps/<id>-gt.png"
            )
        self.root, self.min_area = Path(root).expanduser(), min_area

    def prepare(self) -> None:
        """Nothing to make: the files are the user's."""

    def find(self) -> list[ScanFiles]:
        return find_scans(self.root)

    def stray(self, records: list[ScanFiles]) -> list[str]:
        return stray_files(self.root, [r.key for r in records])

    def check(
        self, records: list[ScanFiles], *, on_bad_file: str, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[list[ScanFiles], list]:
        return check_scans(records, on_bad_file=on_bad_file, max_pixels=max_pixels)

    def census(self, record: ScanFiles) -> InstanceCensus:
        return stamp_census(record, min_region_area=self.min_area)

    def read(self, record: ScanFiles) -> InstanceSample:
        return read_scan(record, min_region_area=self.min_area)

    def depends_on(self, record: ScanFiles) -> tuple[list[Path], dict[str, Any]]:
        return [record.scan, record.pixel_gt, record.region_map], {"source": "staver", "min_area": self.min_area}

    def warn(self, census: Iterable[InstanceCensus]) -> None:
        warn_ground_truth(census)

    def counts(self, census: Iterable[InstanceCensus]) -> dict[str, int]:
        return ground_truth_counts(census)

    def user_splits(self) -> None:
        return None

    def no_instance_hint(self) -> str:
        return (
            f"check that the region maps ({REGION_MAP_DIR}/<key>-gt.png) mark each stamp on a plain background and "
            f"that the pixel ground truth ({PIXEL_GT_DIR}/<key>-px.png) marks its ink"
        )

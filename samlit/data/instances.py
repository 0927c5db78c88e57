"""What the instance sources (COCO, image/label folders) share: bad inputs reported once each, by policy, and an
image's decoded instance masks turned into a ``InstanceSample`` (specks and empty masks out, canonical order)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from samlit.core.images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, exif_orientation
from samlit.data.checks import image_size
from samlit.data.sample import InstanceCensus, InstanceSample, canonical_order, tight_boxes

log = logging.getLogger(__name__)


def image_problem(
    path: Path, *, expected: tuple[int, int] | None, what: str, max_pixels: int = MAX_IMAGE_PIXELS
) -> str | None:
    """Why the image ``path`` cannot be used (missing, unreadable, empty, corrupt, not an image, over ``max_pixels``
    pixels (``samlit.data.checks.image_size``), or not ``expected`` (width, height) as read, i.e. after its EXIF
    orientation), or ``None``."""
    try:
        size = image_size(path, max_pixels=max_pixels)
    except ValueError as error:
        return f"{error}: {what} left out"
    if expected is not None and tuple(size) != tuple(expected):
        return f"size mismatch: {path} is {size[0]}x{size[1]} px as read but {what} says {expected[0]}x{expected[1]}"
    return None


def instance_sample(
    key: str, image: np.ndarray, masks: np.ndarray, *, min_area: int, boxes: np.ndarray | None = None
) -> InstanceSample:
    """An image with its instances: masks (N, H, W) bool; ``boxes`` (N, 4) xyxy (default: the masks' tight boxes).
    Empty masks and masks under ``min_area`` px are left out; the rest come in canonical order."""
    masks = masks.reshape(-1, *image.shape[:2]).astype(bool)
    keep = masks.sum(axis=(1, 2)) >= max(min_area, 1)
    masks = masks[keep]
    boxes = tight_boxes(masks) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)[keep]
    order = canonical_order(masks, tight_boxes(masks))
    return InstanceSample(key=key, image=image, masks=masks[order], boxes=boxes[order])


def instance_census(areas: list[int], *, min_area: int, categories: list[str] | None = None) -> InstanceCensus:
    """Count instances by pixel area: used (>= ``min_area``), empty (0 px) and specks (below ``min_area``); with
    ``categories`` (each instance's category name, in the order of ``areas``) the same counts per category."""
    kinds = ["instances" if a >= max(min_area, 1) else "without_ink" if a == 0 else "below_min_area" for a in areas]
    per_category: dict[str, dict[str, int]] = {}
    for name, kind in zip(categories or [], kinds, strict=categories is not None):
        counts = per_category.setdefault(name, {"instances": 0, "without_ink": 0, "below_min_area": 0})
        counts[kind] += 1
    return InstanceCensus(
        instances=kinds.count("instances"),
        without_ink=kinds.count("without_ink"),
        below_min_area=kinds.count("below_min_area"),
        categories=per_category,
    )


def warn_orientation(paths: Iterable[Path]) -> int:
    """Say once how many images carry an EXIF orientation (applied when read, as annotation tools show them)."""
    turned = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and _turned(p)]
    if turned:
        log.warning(
            "%d images carry an EXIF orientation (e.g. %s): applied when read, as annotation tools show them",
            len(turned), turned[0],
        )  # fmt: skip
    return len(turned)


def _turned(path: Path) -> bool:
    with Image.open(path) as image:
        return exif_orientation(image) > 1

"""What every data source hands out: one image with its instances (``InstanceSample``), the count of an image's
instances by kind (``InstanceCensus``), and the rules shared by all sources: tight boxes, a canonical instance order,
instances with ink only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

LEFT_OUT = ("without_ink", "below_min_area")  # the kinds of instances a census counts and leaves out


@dataclass
class InstanceSample:
    """One image with its instances (for StaVer: a scan with its stamps).

    image: (H, W, 3) uint8 RGB.
    masks: (N, H, W) bool, one per instance (a stamp: the ink pixels inside its region).
    boxes: (N, 4) float32 xyxy in pixels, the instances' box prompts (a stamp: its region's bounding rectangle).
    """

    key: str
    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class InstanceCensus:
    """An image's instances: ``instances`` (at least ``min_region_area`` px, with ink: trained on and scored),
    ``without_ink`` (big enough, but no ink inside: left out) and ``below_min_area`` (specks: left out); and how
    its ground truth had to be read: ``grey_share`` per file (pixels neither of its two main values:
    thresholded) and ``outline_share`` (share of the region map's regions that hole filling added); for sources
    with categories (COCO) the same three counts per category name, ``categories[name] = {"instances": used,
    "without_ink": n, "below_min_area": m}``."""

    instances: int
    without_ink: int
    below_min_area: int
    grey_share: dict[str, float] = field(default_factory=dict)
    outline_share: float = 0.0
    categories: dict[str, dict[str, int]] = field(default_factory=dict)


def category_counts(census: Iterable[InstanceCensus]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The data set's instances per category after filtering, i.e. the ones trained on and scored (they add up to
    the ``instances`` of ``census``), and beside them what was left out per category (``LEFT_OUT`` kinds, the
    categories and kinds with none left out omitted)."""
    used: Counter[str] = Counter()
    left_out: dict[str, Counter[str]] = {}
    for image in census:
        for name, counts in image.categories.items():
            used[name] += counts.get("instances", 0)
            for kind in LEFT_OUT:
                if counts.get(kind, 0):
                    left_out.setdefault(name, Counter())[kind] += counts[kind]
    return dict(sorted(used.items())), {name: dict(left_out[name]) for name in sorted(left_out)}


def with_ink(sample: InstanceSample) -> InstanceSample:
    """``sample`` without its instances that hold no ink (nothing to learn, nothing to score)."""
    keep = sample.masks.any(axis=(1, 2)) if sample.masks.ndim == 3 else np.zeros(0, bool)  # also with no instance left
    return InstanceSample(key=sample.key, image=sample.image, masks=sample.masks[keep], boxes=sample.boxes[keep])


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 ``[x_min, y_min, x_max + 1, y_max + 1]`` of each mask (zeros if empty)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def canonical_order(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Indices that order instances by (y0, x0, y1, x1) of their boxes, then by their first pixel in raster order:
    the same instances give the same order whatever order a file lists them in."""
    first = np.array([int(np.argmax(m.ravel())) for m in masks], np.int64)
    return np.lexsort((first, boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1])) if len(boxes) else np.zeros(0, int)

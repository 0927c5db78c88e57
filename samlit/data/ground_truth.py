"""Ground-truth images -> foreground masks: which pixels are ink (pixel ground truth) or stamp (region map).

Real ground truth is not always a clean two-value PNG. The rules, each from a case seen on real data:

- **Polarity** comes from the image's border, not from the majority value: paper surrounds the stamps, while a
  stamp may cover more than half of a page (a majority rule then flips the polarity and loses the scan).
  The border's majority class is the background; ties fall back to the whole image's majority.
- **Not binary** (saved as JPEG, anti-aliased, a little noise): an exact "differs from the background value"
  rule turns every grey pixel into foreground (masks 2.5-3x the true ink; a noisy inverted map becomes one
  whole-page "stamp"). Such images are thresholded at Otsu's level between the two classes, and the share of
  grey pixels is returned so the caller can say so.
- **Outline-only region maps** (a stamp drawn as its contour, not filled): each region's holes are filled,
  so the ink inside the outline belongs to it; the filled share is returned so the caller can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LABEL_VALUES = 8  # up to this many distinct values, an image is labels (read exactly), not a grey image


@dataclass(frozen=True)
class Foreground:
    """mask: (H, W) bool foreground. grey_share: share of pixels that are neither of the image's two main
    values (0 for a clean binary image). threshold: the grey level used (``None`` when the image was binary)."""

    mask: np.ndarray
    grey_share: float
    threshold: int | None


def foreground(gray: np.ndarray) -> Foreground:
    """Foreground of a (H, W) uint8 ground-truth image, by the rules of this module. An image that is all one
    value has none. An image with at most ``LABEL_VALUES`` distinct values, no two of them neighbours (binary, or
    a few label values; noise gives runs of neighbouring values), is read exactly: every pixel that differs from
    the border's value is foreground."""
    counts = np.bincount(gray.ravel(), minlength=256)
    values = np.flatnonzero(counts)
    if len(values) <= LABEL_VALUES and not (np.diff(values) == 1).any():
        border = np.bincount(_border(gray), minlength=256)
        ties = np.flatnonzero(border == border.max())
        background = ties[np.argmax(counts[ties])] if len(ties) > 1 else ties[0]  # ties: the image's majority
        return Foreground(mask=gray != background, grey_share=0.0, threshold=None)
    threshold = int(cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0])
    bright = gray > threshold
    grey_share = float(1 - np.sort(counts)[-2:].sum() / gray.size)
    mask = ~bright if _background_is_bright(bright) else bright
    return Foreground(mask=mask, grey_share=grey_share, threshold=threshold)


def _border(image: np.ndarray) -> np.ndarray:
    """The 1-px frame of a (H, W) array, flat."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _background_is_bright(bright: np.ndarray) -> bool:
    """The class that holds most of the image's 1-px border (ties: most of the image; then bright)."""
    border = _border(bright)
    share = border.mean() if border.size else 0.5
    if share == 0.5:
        share = bright.mean()
    return bool(share >= 0.5)


def fill_holes(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) bool regions with their holes filled (each outer contour drawn filled), and the share of the
    result's pixels that filling added (near 1 for an outline-only region map, 0 for a filled one)."""
    if not mask.any():
        return mask, 0.0
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    filled = filled.view(bool) | mask
    return filled, float(1 - mask.sum() / filled.sum())

"""Where a corrective click goes, given a predicted and a true mask: the two rules of interactive segmentation.

- ``centre_click`` (evaluation, deterministic): the centre of the largest error region, i.e. its pixel farthest from
  the region's border (the RITM convention, Sofiiuk et al. 2022, also SAM 2's evaluation), positive on a false
  negative region, negative on a false positive one. "Largest" is by pixel count (8-connected regions); on thin
  ink this picks a missed stroke over a small blot, where RITM's rule (the farthest pixel of all errors) would pick
  the thickest error.
- ``sample_click`` (training, random): a pixel drawn uniformly from the error (false negatives and false positives
  together), positive when it is a false negative; or, with ``from_truth``, drawn from the true mask as if nothing
  were predicted (SAM 2's ``prob_to_sample_from_gt_for_train``; micro-sam samples from the errors too).

Clicks are ``(x, y, label)``: column and row of a pixel of the masks' grid (SAM's prompt encoder adds 0.5 to reach
the pixel's centre), label 1 positive, 0 negative; ``None`` when there is no error to correct.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

Click = tuple[int, int, int]
CONNECTIVITY = np.ones((3, 3), bool)  # 8-connected regions


def centre_click(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> Click | None:
    """The click at the centre of the largest error region of ``pred`` against ``truth`` (both (H, W) bool).

    Ties: between a false-negative and a false-positive region of equal size, the false negative; between pixels
    equally far from the border, the first in row-major order. The image's edge counts as a region border.

    Returns:
        ``(x, y, label)``: label 1 on a false-negative region, 0 on a false-positive one; ``None`` when
        ``pred == truth``.
    """
    pred, truth = _numpy(pred), _numpy(truth)
    best: tuple[int, np.ndarray, int] | None = None  # (size, region mask, label)
    for label, error in ((1, truth & ~pred), (0, pred & ~truth)):
        if not error.any():
            continue
        regions, count = ndimage.label(error, structure=CONNECTIVITY)
        sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
        largest = int(sizes.argmax())
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), regions == largest + 1, label)
    if best is None:
        return None
    _, region, label = best
    rows, cols = np.nonzero(region)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    window = np.pad(region[y0:y1, x0:x1], 1)  # zeros around: the region's bounding box edge and the image edge
    distance = ndimage.distance_transform_edt(window)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x0 + x), int(y0 + y), label


def sample_click(
    pred: torch.Tensor, truth: torch.Tensor, *, generator: torch.Generator, from_truth: bool = False
) -> Click | None:
    """A click drawn uniformly from the error pixels of ``pred`` against ``truth`` (both (H, W) bool, any device).

    Args:
        generator: a CPU generator (seeded by the caller: the same generator state gives the same click).
        from_truth: draw from ``truth``'s pixels instead (a positive click, as if ``pred`` were empty).

    Returns:
        ``(x, y, label)``: label 1 when the pixel is a false negative (or ``from_truth``), 0 when a false positive;
        ``None`` when there is nothing to draw from.
    """
    error = truth if from_truth else truth ^ pred
    where = error.flatten().nonzero()[:, 0]
    if len(where) == 0:
        return None
    index = int(where[int(torch.randint(len(where), (1,), generator=generator))])
    y, x = divmod(index, error.shape[1])
    return x, y, int(bool(truth[y, x]))


def _numpy(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask, bool)

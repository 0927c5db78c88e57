"""Per-mask scores for masks made of thin strokes, where mask IoU / Dice (``samlit.core.masks``) cannot tell a stroke
drawn one pixel off from a stroke missed: boundary IoU at fixed widths (how well the edges line up) and clDice
(how much of each skeleton lies in the other mask: whether the strokes are found), each mask pair scored once on
the box around it (``stroke_scores``).

Boundary IoU follows Cheng et al., CVPR 2021, *Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation* (reference: bowenc0221/boundary-iou-api, ``mask_to_boundary`` / ``boundary_iou``); clDice follows Shit
et al., CVPR 2021, *clDice - a Novel Topology-Preserving Loss Function for Tubular Structure Segmentation*, with
``skimage.morphology.skeletonize`` as the skeleton.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from skimage.morphology import skeletonize

BAND_RATIO = 0.02  # the reference's dilation_ratio: the band is 2 % of the image diagonal
WIDTHS = {"1px": 1, "2px": 2, "3px": 3}  # fixed boundary widths (px), next to the 2 % one
STROKE_KEYS = (
    "boundary_iou_1px",
    "boundary_iou_2px",
    "boundary_iou_3px",
    "boundary_iou_2pct",
    "band_covers_mask_2pct",
    "cldice",
)
KERNEL = np.ones((3, 3), np.uint8)


def band_width(height: int, width: int, *, ratio: float = BAND_RATIO) -> int:
    """Width (px) of the boundary band that is ``ratio`` of the (height, width) image's diagonal, at least 1 px,
    rounded as the reference does (``int(round(ratio * diagonal))``: half to even)."""
    return max(1, round(ratio * math.hypot(height, width)))


def mask_to_boundary(mask: np.ndarray, *, width: int) -> np.ndarray:
    """The reference's boundary of one (H, W) bool ``mask``: the mask minus its erosion by a 3 x 3 kernel ``width``
    times (``cv2.erode``) after padding 1 px of zeros, so a mask cut by the image border has a boundary there.
    Returns (H, W) bool: the mask's pixels within ``width`` px (chessboard distance) of its outside."""
    height, wide = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, KERNEL, iterations=width)[1 : height + 1, 1 : wide + 1]
    return mask & (eroded == 0)


def stroke_scores(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, *, empty: float = 0.0) -> dict:
    """Stroke scores of each mask pair of ``pred`` and ``truth`` (N, H, W) bool (torch or NumPy, any device).

    Returns ``STROKE_KEYS`` -> (N,) float64 NumPy arrays:

    - ``boundary_iou_<w>``: |G_w & P_w| / |G_w | P_w|, where X_w = ``mask_to_boundary(X, width=w)``, for w = 1, 2,
      3 px and ``2pct`` = ``band_width(H, W)`` (2 % of the (H, W) frame's diagonal: the item's page, or its crop
      with ``data.crop=box``);
    - ``band_covers_mask_2pct``: 1.0 where the 2 % band is the whole ground-truth mask (its erosion is empty);
      where it covers the prediction too, boundary IoU at 2 % is mask IoU;
    - ``cldice``: 2 Tprec Tsens / (Tprec + Tsens), Tprec = |S(P) & G| / |S(P)|, Tsens = |S(G) & P| / |S(G)|, S the
      ``skeletonize`` skeleton (0 where the sum is 0).

    A pair with nothing in either mask scores ``empty`` (as ``mask_scores``); one empty mask scores 0.

    Each pair is scored on the bounding box of ``pred | truth`` grown by 1 px and clipped to the frame, with the
    same result as on the whole frame (``tests/core/test_strokes.py``): a pixel lies in the ``w`` px band when an
    empty pixel (or the 1 px of zero padding beyond the frame) lies within ``w`` px of it, and the box's padding
    lies exactly as far as the frame's border or the first empty pixel beyond the box, so no band needs a wider
    margin; the skeleton of a component is a function of its pixels and their empty surroundings.
    """
    pred, truth = as_bool_array(pred), as_bool_array(truth)
    count, height, wide = truth.shape
    widths = {**WIDTHS, "2pct": band_width(height, wide)}
    scores = {key: np.full(count, empty, dtype=np.float64) for key in STROKE_KEYS}
    scores["band_covers_mask_2pct"][:] = 1.0  # both empty: an empty ground truth is covered by any band
    for i in range(count):
        window = grown_box(pred[i] | truth[i], grow=1)
        if window is None:  # both empty: ``empty`` everywhere
            continue
        p, t = pred[i][window], truth[i][window]
        for key, value in {**band_scores(p, t, widths=widths), "cldice": cldice(p, t)}.items():
            scores[key][i] = value
    return scores


def as_bool_array(masks: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) masks as a bool NumPy array (a torch tensor is copied to the CPU first)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    return np.asarray(masks).astype(bool, copy=False)


def grown_box(mask: np.ndarray, *, grow: int) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the bounding box of (H, W) bool ``mask`` grown by ``grow`` px and clipped to the
    frame; ``None`` for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return None
    height, wide = mask.shape
    return (
        slice(max(0, rows[0] - grow), min(height, rows[-1] + 1 + grow)),
        slice(max(0, cols[0] - grow), min(wide, cols[-1] + 1 + grow)),
    )


def depth(mask: np.ndarray) -> np.ndarray:
    """(h, w) float32: each pixel of (h, w) bool ``mask``'s chessboard distance to the nearest empty pixel, or to the
    1 px of zero padding around the frame (``cv2.distanceTransform``, ``DIST_C``: exact); 0 outside the mask. A
    pixel lies in the mask's ``w`` px boundary (``mask_to_boundary``: it does not survive ``w`` erosions by a 3 x 3
    kernel) when 0 < depth <= w."""
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return cv2.distanceTransform(padded, cv2.DIST_C, 3)[1:-1, 1:-1]


def band_scores(pred: np.ndarray, truth: np.ndarray, *, widths: dict[str, int]) -> dict[str, float]:
    """Boundary IoU of (h, w) bool ``pred`` and ``truth`` (not both empty) at each of ``widths`` (name -> px, with
    ``2pct``): ``boundary_iou_<name>``, and ``band_covers_mask_2pct``. A pixel lies in both bands of width w when it
    lies in both masks and its depth in each is at most w."""
    pred_depth, truth_depth = depth(pred), depth(truth)
    both = pred & truth
    deepest = np.maximum(pred_depth[both], truth_depth[both])
    pred_depth, truth_depth = pred_depth[pred], truth_depth[truth]  # each mask's pixels: depth >= 1
    out = {}
    for name, width in widths.items():
        inter = np.count_nonzero(deepest <= width)
        union = np.count_nonzero(pred_depth <= width) + np.count_nonzero(truth_depth <= width) - inter
        out[f"boundary_iou_{name}"] = inter / union
    out["band_covers_mask_2pct"] = float(truth_depth.max(initial=0) <= widths["2pct"])
    return out


def cldice(pred: np.ndarray, truth: np.ndarray) -> float:
    """clDice of (h, w) bool ``pred`` and ``truth`` (``skeletonize`` skeletons; 0 where Tprec + Tsens is 0)."""
    precision, sensitivity = skeleton_share(pred, truth), skeleton_share(truth, pred)
    total = precision + sensitivity
    return float(2 * precision * sensitivity / total) if total > 0 else 0.0


def skeleton_share(mask: np.ndarray, other: np.ndarray) -> float:
    """|S(mask) & other| / |S(mask)| of (h, w) bool masks (0 for an empty skeleton); the skeleton is taken on the
    mask's own ``grown_box`` (a skeleton does not depend on the empty frame around it), not on the pair's."""
    window = grown_box(mask, grow=1)
    if window is None:
        return 0.0
    skeleton = skeletonize(mask[window])
    return np.count_nonzero(skeleton & other[window]) / max(1, np.count_nonzero(skeleton))

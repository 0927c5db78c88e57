"""Boundary IoU and clDice (``samlit.core.strokes``) on masks whose scores are worked out by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.morphology import skeletonize

from samlit.core.masks import mask_scores
from samlit.core.strokes import STROKE_KEYS, band_width, mask_to_boundary, stroke_scores


def bar(rows: slice, *, shape: tuple[int, int] = (20, 40)) -> np.ndarray:
    """(1, H, W) bool: a horizontal bar over ``rows``, columns 5..34 (L = 30 px long)."""
    mask = np.zeros((1, *shape), bool)
    mask[0, rows, 5:35] = True
    return mask


def square_ring() -> np.ndarray:
    """(1, 40, 40) bool: a square ring 3 px wide, outer square rows/cols 10..29 (20 px), hole 13..26 (14 px)."""
    ring = np.zeros((1, 40, 40), bool)
    ring[0, 10:30, 10:30] = True
    ring[0, 13:27, 13:27] = False
    return ring


def test_a_3px_line_shifted_by_1px():
    truth, pred = bar(slice(5, 8)), bar(slice(6, 9))  # rows 5..7 and 6..8, 30 px long
    # mask IoU: 2 shared rows of 4 = 60 / 120 = 0.5
    assert mask_scores(torch.from_numpy(pred), torch.from_numpy(truth))[0].item() == 0.5
    scores = stroke_scores(pred, truth)
    # 1 px: erosion keeps the middle row minus its 2 end pixels (28 px), so a bar's boundary is its two long rows
    # plus the 2 end pixels of the middle row: 2 * 30 + 2 = 62 px. G_1 = rows 5 and 7 + (6, 5) and (6, 34); P_1 =
    # rows 6 and 8 + (7, 5) and (7, 34). They share (6, 5), (6, 34), (7, 5), (7, 34): 4 px; union 62 + 62 - 4 = 120.
    assert scores["boundary_iou_1px"][0] == pytest.approx(4 / 120)
    # 2 and 3 px: two erosions empty a 3 px bar, the band is the whole mask and boundary IoU is mask IoU, 0.5
    assert scores["boundary_iou_2px"][0] == scores["boundary_iou_3px"][0] == pytest.approx(0.5)
    # 2 %: the 20 x 40 frame's diagonal is 44.7 px, 2 % of it rounds to 1 px: the 1 px figure; the band (1 px)
    # leaves the middle row of the ground truth, so it does not cover the mask
    assert band_width(20, 40) == 1
    assert scores["boundary_iou_2pct"][0] == pytest.approx(4 / 120)
    assert scores["band_covers_mask_2pct"][0] == 0.0
    # clDice: skeletonize (Zhang-Suen) thins a 3 x 30 bar to its middle row from the left end to 2 px short of the
    # right end (28 px) plus the top-right corner pixel: 29 px. S(G) = row 6, cols 5..32 + (5, 33): 28 of its 29 px
    # lie in P (rows 6..8), Tsens = 28/29. S(P) = row 7, cols 5..32 + (6, 33): all in G (rows 5..7), Tprec = 1.
    # clDice = 2 * (28/29) / (1 + 28/29) = 56/57 = 0.982: the stroke is found, though half its pixels are off.
    assert skeletonize(truth[0]).sum() == 29
    assert scores["cldice"][0] == pytest.approx(56 / 57)


def test_a_square_ring_with_a_gap():
    truth = square_ring()  # 20^2 - 14^2 = 204 px
    pred = truth.copy()
    pred[0, 10:13, 19:22] = False  # a 3 x 3 gap cut through the top side: 195 px, IoU 195/204
    scores = stroke_scores(pred, truth)
    # 1 px: the erosion of G is the middle square loop, rows/cols 11 and 28 (side 18: 4 * 18 - 4 = 68 px), so
    # G_1 = 204 - 68 = 136 px. The gap takes 6 px of G_1 (rows 10 and 12, cols 19..21) and P's erosion loses the
    # middle row at cols 18..22; of these, cols 18 and 22 (in P, eroded in G) join P_1. |G_1 & P_1| = 136 - 6 = 130,
    # |G_1 | P_1| = 136 + 2 = 138.
    assert scores["boundary_iou_1px"][0] == pytest.approx(130 / 138)
    # 2 and 3 px: two erosions empty a 3 px ring: mask IoU, 195/204
    assert scores["boundary_iou_2px"][0] == scores["boundary_iou_3px"][0] == pytest.approx(195 / 204)
    # clDice: the ring's skeleton is the middle loop less its 4 corner pixels (68 - 4 = 64 px); the gap cuts 3 of
    # them (row 11, cols 19..21): Tsens = 61/64. S(P) lies in P, inside G: Tprec = 1. clDice = 2 * (61/64) / (1 +
    # 61/64) = 122/125 = 0.976.
    assert skeletonize(truth[0]).sum() == 64
    assert scores["cldice"][0] == pytest.approx(122 / 125)


def test_a_mask_and_itself_score_1():
    masks = np.concatenate([bar(slice(5, 8), shape=(40, 40)), square_ring()])
    scores = stroke_scores(masks, masks)
    for key in STROKE_KEYS:
        if key != "band_covers_mask_2pct":
            assert scores[key].tolist() == [1.0, 1.0], key
    # 2 % of the 40 x 40 diagonal (56.6 px) is 1 px: the bar and the ring keep their middle lines
    assert scores["band_covers_mask_2pct"].tolist() == [0.0, 0.0]


def test_empty_masks():
    truth = square_ring()
    nothing = np.zeros_like(truth)
    missed = stroke_scores(nothing, truth)  # an empty prediction: every score 0
    invented = stroke_scores(truth, nothing)  # a prediction of an empty ground truth: 0
    for key in STROKE_KEYS:
        if key != "band_covers_mask_2pct":
            assert missed[key][0] == invented[key][0] == 0.0, key
    # both empty: ``empty`` (mask_scores' convention), 0 by default
    assert all(stroke_scores(nothing, nothing)[k][0] == 0.0 for k in STROKE_KEYS if k != "band_covers_mask_2pct")
    assert all(stroke_scores(nothing, nothing, empty=1.0)[k][0] == 1.0 for k in STROKE_KEYS)


def strokes(rng: np.random.Generator, *, count: int, shape: tuple[int, int]) -> np.ndarray:
    """(count, H, W) bool: a few random lines and arcs, 1..7 px thick (stamp-like ink)."""
    masks = np.zeros((count, *shape), np.uint8)
    for mask in masks:
        for _ in range(rng.integers(1, 4)):
            thickness = int(rng.integers(1, 8))
            x0, x1 = rng.integers(0, shape[1], 2)
            y0, y1 = rng.integers(0, shape[0], 2)
            cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness)
            axes = (int(rng.integers(10, 80)), int(rng.integers(10, 80)))
            cv2.ellipse(mask, (int(x0), int(y1)), axes, 0, 0, int(rng.integers(90, 360)), 1, thickness)
    return masks.astype(bool)


def test_boundary_iou_at_2pct_is_mask_iou_for_strokes_thinner_than_the_band():
    # a 300 x 400 frame: diagonal 500 px, 2 % = 10 px; strokes at most 7 px thick vanish in 10 erosions (any pixel
    # of a stroke w px thick lies within ceil(w / 2) <= 4 px of its outside), so both bands are the whole masks
    rng = np.random.default_rng(0)
    truth = strokes(rng, count=12, shape=(300, 400))
    pred = strokes(rng, count=12, shape=(300, 400)) | truth & (rng.random(truth.shape) < 0.7)
    assert band_width(300, 400) == 10
    scores = stroke_scores(pred, truth)
    iou, _ = mask_scores(torch.from_numpy(pred), torch.from_numpy(truth))
    assert scores["band_covers_mask_2pct"].tolist() == [1.0] * 12
    np.testing.assert_allclose(scores["boundary_iou_2pct"], iou.double().numpy(), rtol=1e-6)
    assert iou.min() > 0.05 and iou.max() < 0.95  # a real spread of scores, not a trivial case


def test_band_width_follows_the_reference():
    # int(round(0.02 * diagonal)), at least 1: an A4 page at 200 dpi (1654 x 2339, diagonal 2864.7) -> 57 px;
    # a 1024 px SAM frame (diagonal 1448.2) -> 29 px; 10 x 10 (diagonal 14.1, 0.28) -> 1 px
    assert (band_width(2339, 1654), band_width(1024, 1024), band_width(10, 10)) == (57, 29, 1)


def test_a_mask_cut_by_the_frame_border_has_a_boundary_there():
    full = np.ones((5, 6), bool)  # the whole frame: the 1 px of zero padding makes its outer ring the boundary
    expected = np.ones((5, 6), bool)
    expected[1:4, 1:5] = False
    assert np.array_equal(mask_to_boundary(full, width=1), expected)
    inner = full.copy()
    inner[2, 2:4] = False  # 2 erosions leave the middle row's 2 central pixels (3 px from the padding)
    assert np.array_equal(mask_to_boundary(full, width=2), inner)
    assert np.array_equal(mask_to_boundary(full, width=3), full)  # 3 erosions empty a 5 px tall frame


def full_frame_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    """``stroke_scores`` the slow way: boundaries (``mask_to_boundary``) and skeletons of the whole frame."""
    widths = {"1px": 1, "2px": 2, "3px": 3, "2pct": band_width(*truth.shape[1:])}
    out: dict[str, list[float]] = {key: [] for key in STROKE_KEYS}
    for p, g in zip(pred, truth, strict=True):
        for name, width in widths.items():
            pb, gb = mask_to_boundary(p, width=width), mask_to_boundary(g, width=width)
            union = (pb | gb).sum()
            out[f"boundary_iou_{name}"].append((pb & gb).sum() / union if union else 0.0)
        eroded = g & ~mask_to_boundary(g, width=widths["2pct"])
        out["band_covers_mask_2pct"].append(float(not eroded.any()))
        sp, sg = skeletonize(p), skeletonize(g)
        precision = (sp & g).sum() / max(1, sp.sum())
        sensitivity = (sg & p).sum() / max(1, sg.sum())
        total = precision + sensitivity
        out["cldice"].append(2 * precision * sensitivity / total if total else 0.0)
    return out


def blobs(rng: np.random.Generator, *, count: int, shape: tuple[int, int]) -> np.ndarray:
    """(count, H, W) bool: smoothed noise thresholded: blobs and holes of many sizes, often cut by the border."""
    noise = rng.standard_normal((count, *shape)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), sigmaX=float(rng.uniform(1.5, 6))) for n in noise])
    levels = [np.quantile(s, rng.uniform(0.6, 0.95)) for s in smooth]
    return np.stack([s > level for s, level in zip(smooth, levels, strict=True)])


def test_the_box_crop_gives_the_full_frame_scores():
    # the crop is the box of pred | truth grown by 1 px, whatever the band (here 2 % = 9 px): the erosion's zero
    # padding stands for the empty pixels beyond the box
    rng = np.random.default_rng(1)
    shape = (250, 390)  # diagonal 463.3 px: 2 % = 9 px
    truth = blobs(rng, count=16, shape=shape)
    pred = blobs(rng, count=16, shape=shape)
    for i in range(8):  # small objects away from the border, where the crop is much smaller than the frame
        truth[i], pred[i] = False, False
        truth[i, 100:130, 150 + i : 190] = rng.random((30, 40 - i)) < 0.9
        pred[i, 104:136, 146 : 186 - i] = rng.random((32, 40 - i)) < 0.9
        truth[i, 110:120, 160:175] = True  # a solid 10 x 15 px core: 1..4 erosions leave some of it, 5 do not
    pred[8] = False  # an empty prediction
    truth[9], pred[9] = False, False  # both empty
    assert all(m[:, 0].any() or m[:, -1].any() or m[0].any() or m[-1].any() for m in truth[10:])  # border-cut
    expected = full_frame_scores(pred, truth)
    for tensors in (False, True):  # NumPy or torch input
        got = stroke_scores(torch.from_numpy(pred), torch.from_numpy(truth)) if tensors else stroke_scores(pred, truth)
        for key in STROKE_KEYS:
            assert got[key].tolist() == pytest.approx(expected[key], abs=1e-12), key

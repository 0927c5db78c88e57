"""The N-click evaluation (``click_ious``, ``ClickCurve``) with stand-in decoders whose behaviour is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samlit.model.interactive import click_ious, click_prompts, clicks_to_reach, decoder_frame_prompts, with_points
from samlit.model.metrics import ClickCurve, click_summary

SIZE = 64  # the stand-ins' "original" images: 64 x 64, the decoder frame 256 x 256 (4x)


def truths() -> torch.Tensor:
    truth = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    truth[0, 10:30, 10:30] = True
    truth[1, 5:60, 30:34] = True
    truth[2, 40:50, 2:60] = True
    return truth


def to_masks(logits: torch.Tensor) -> torch.Tensor:
    return F.interpolate(logits[:, None], size=(SIZE, SIZE), mode="bilinear")[:, 0] > 0


def logits_of(masks: torch.Tensor) -> torch.Tensor:
    return F.interpolate(masks[:, None].float() * 20 - 10, size=(256, 256), mode="nearest")[:, 0]


def test_a_model_that_always_predicts_the_truth_is_flat_at_one_with_no_clicks_needed():
    truth = truths()
    seen = []
    decode = lambda points, mask_input: seen.append(points) or logits_of(truth)  # noqa: E731
    ious = click_ious(decode=decode, to_masks=to_masks, truth=truth, scale=(16.0, 16.0), clicks=4)
    assert ious.shape == (3, 5) and torch.equal(ious, torch.ones(3, 5))
    assert all((points[1] == -1).all() for points in seen[1:])  # nothing to correct: padding points only
    for level in (0.85, 0.9):
        needed, reached = clicks_to_reach(ious, level)
        assert needed.tolist() == [0, 0, 0] and reached.all()


def test_a_model_whose_output_never_changes_is_flat_at_its_box_iou_and_needs_n_clicks():
    truth = truths()
    stuck = truth.clone()
    stuck[0, 10:30, 10:13] = False  # IoU 17/20 = 0.85: reaches 0.85 with the box, never 0.90
    stuck[1, 5:30, 30:34] = False  # IoU 30/55 ~ 0.55: never reaches either
    calls = []

    def decode(points, mask_input):
        calls.append((None if points is None else points[0].shape[1], mask_input))
        return logits_of(stuck)

    ious = click_ious(decode=decode, to_masks=to_masks, truth=truth, scale=(16.0, 16.0), clicks=5)
    box = ious[:, 0]
    assert torch.equal(ious, box[:, None].expand(-1, 6))
    assert box.tolist() == pytest.approx([0.85, 30 / 55, 1.0])
    assert clicks_to_reach(ious, 0.85)[0].tolist() == [0, 5, 0]
    needed, reached = clicks_to_reach(ious, 0.90)
    assert needed.tolist() == [5, 5, 0] and reached.tolist() == [False, False, True]
    # pass k holds k points and the previous pass's logits as the mask prompt
    assert [c[0] for c in calls] == [None, 1, 2, 3, 4, 5] and calls[0][1] is None
    assert all(torch.equal(mask_input, logits_of(stuck)) for _, mask_input in calls[1:])


def test_clicks_go_where_the_error_is_and_a_decoder_that_follows_them_improves():
    truth = truths()

    def decode(points, mask_input):  # "paints" a 9 x 9 square of truth around each positive click
        current = torch.zeros_like(truth) if mask_input is None else to_masks(mask_input)
        if points is not None:
            for i, (coords, labels) in enumerate(zip(*points, strict=True)):
                for (x, y), label in zip((coords / 16).round().long().tolist(), labels.tolist(), strict=True):
                    if label == 1:
                        window = (slice(max(y - 4, 0), y + 5), slice(max(x - 4, 0), x + 5))
                        current[i][window] |= truth[i][window]
        return logits_of(current)

    ious = click_ious(decode=decode, to_masks=to_masks, truth=truth, scale=(16.0, 16.0), clicks=6)
    assert (ious[:, 0] == 0).all() and (ious[:, 1:] > 0).all()
    assert (ious.diff(dim=1) >= 0).all() and (ious[:, -1] > ious[:, 1]).all()


def test_prompts_of_clicks_in_pixels_and_in_the_decoder_frame():
    coords, labels = click_prompts([(10, 20, 1), None, (0, 5, 0)], scale=(2.0, 4.0))
    assert coords.tolist() == [[[20.0, 80.0]], [[0.0, 0.0]], [[0.0, 20.0]]] and labels.tolist() == [[1], [-1], [0]]
    coords, _ = decoder_frame_prompts([(0, 255, 1)])
    assert coords.tolist() == [[[1.5, 1021.5]]]  # the centre of a 4 x 4 cell, before SAM's +0.5
    both = with_points((torch.zeros(3, 2, 2), torch.ones(3, 2, dtype=torch.int64)), (coords.expand(3, -1, -1), labels))
    assert both[0].shape == (3, 3, 2) and both[1][:, 2].tolist() == [1, -1, 0]


def test_click_curve_metric_means_noc_and_the_metrics_json_block():
    curve = ClickCurve(clicks=2)
    curve.update(torch.tensor([[0.5, 0.86, 0.95], [0.9, 0.9, 0.9]]))
    curve.update(torch.tensor([[0.1, 0.2, 0.3]]))
    computed = curve.compute()
    logged = {f"test/clicks/{k}": v for k, v in computed.items()}
    summary = click_summary(logged)
    assert summary["miou"] == pytest.approx([0.5, 1.96 / 3, 2.15 / 3])
    assert summary["noc85"] == pytest.approx((1 + 0 + 2) / 3) and summary["not_reached_85"] == 1
    assert summary["noc90"] == pytest.approx((2 + 0 + 2) / 3) and summary["not_reached_90"] == 1
    assert (summary["max_clicks"], summary["n_masks"]) == (2, 3)
    assert click_summary({"test/iou": 0.5}) is None
    needed, reached = clicks_to_reach(np.array([[0.9, 0.0]]), 0.9)  # reached with the box: 0, even if it drops later
    assert needed.tolist() == [0] and reached.tolist() == [True]

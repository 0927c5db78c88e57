"""Where corrective clicks go: the centre of the largest error region (evaluation) and a uniform draw from the error
(training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samlit.core.clicks import centre_click, sample_click


def square(size: int, y0: int, x0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_a_single_missed_blob_is_clicked_at_its_centre_as_a_positive_click():
    truth = square(40, 10, 20, 9)  # rows 10..18, columns 20..28: centre (x 24, y 14)
    assert centre_click(np.zeros_like(truth), truth) == (24, 14, 1)


def test_the_farthest_pixel_from_the_border_of_an_l_shaped_region():
    truth = np.zeros((30, 30), bool)
    truth[2:28, 2:8] = True  # a 26 x 6 bar ...
    truth[2:14, 2:26] = True  # ... under a 12 x 24 slab: its centre is farther from the border than the bar's
    x, y, label = centre_click(np.zeros_like(truth), truth)
    assert label == 1 and 6 <= y <= 9 and 6 <= x <= 21  # inside the slab, away from its edges


def test_between_a_false_negative_and_a_false_positive_region_the_larger_one_is_clicked():
    truth = square(64, 5, 5, 6) | square(64, 40, 40, 3)  # a 6 x 6 blob found ... a 3 x 3 one missed
    pred = square(64, 5, 5, 6) | square(64, 20, 40, 10)  # ... and a 10 x 10 false blob
    assert centre_click(pred, truth) == (44, 24, 0)  # negative, on the false blob
    pred = square(64, 5, 5, 6) | square(64, 20, 40, 2)  # a 2 x 2 false blob: the 3 x 3 miss is larger
    assert centre_click(pred, truth) == (41, 41, 1)


def test_no_error_means_no_click():
    truth = square(32, 4, 4, 10)
    assert centre_click(truth.copy(), truth) is None
    assert centre_click(np.zeros_like(truth), np.zeros_like(truth)) is None
    assert sample_click(torch.from_numpy(truth), torch.from_numpy(truth), generator=torch.Generator()) is None


def test_a_region_touching_the_image_edge_counts_the_edge_as_its_border():
    truth = np.zeros((20, 20), bool)
    truth[:, :5] = True  # a 20 x 5 bar along the left edge: its centre column is 2
    x, y, label = centre_click(np.zeros_like(truth), truth)
    assert (x, label) == (2, 1) and 2 <= y <= 17


@pytest.mark.parametrize("seed", range(20))
def test_clicks_on_random_masks_are_positive_in_false_negatives_and_negative_in_false_positives(seed):
    rng = np.random.default_rng(seed)
    truth, pred = rng.random((2, 48, 40)) < rng.uniform(0.05, 0.6, 2)[:, None, None]
    error_fn, error_fp = truth & ~pred, pred & ~truth
    for x, y, label in filter(None, [centre_click(pred, truth)]):
        assert (error_fn if label == 1 else error_fp)[y, x]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(10):
        x, y, label = sample_click(torch.from_numpy(pred), torch.from_numpy(truth), generator=generator)
        assert (error_fn if label == 1 else error_fp)[y, x]
        x, y, label = sample_click(
            torch.from_numpy(pred), torch.from_numpy(truth), generator=generator, from_truth=True
        )
        assert label == 1 and truth[y, x]


def test_a_drawn_click_is_a_function_of_the_generator_state_and_covers_every_error_pixel():
    truth = torch.from_numpy(square(16, 2, 2, 4))
    pred = torch.from_numpy(square(16, 4, 4, 4))
    draw = lambda seed: sample_click(pred, truth, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert [draw(s) for s in range(30)] == [draw(s) for s in range(30)]
    seen = {draw(s)[:2] for s in range(600)}
    assert len(seen) == int((truth ^ pred).sum())  # uniform over the error: every pixel turns up

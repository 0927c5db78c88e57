"""Figures: panels side by side, small crops enlarged sharply, the scan rebuilt from the SAM-frame image."""

from __future__ import annotations

import numpy as np
import torch

from samlit.data.sam_frame import to_sam_frame
from samlit.data.sample import StampSample
from samlit.run.figures import MIN_SIDE, comparison, mean_iou, scan_image


def test_a_small_crop_is_enlarged_by_an_integer_factor():
    image = np.full((50, 80, 3), 255, np.uint8)
    truth = np.zeros((1, 50, 80), bool)
    truth[0, 10:20, 10:40] = True
    picture = comparison(image, truth, {"a": truth, "b": ~truth}, np.array([[10, 10, 40, 20]]))
    factor = -(-MIN_SIDE // 80)
    assert picture.shape == (50 * factor, 3 * 80 * factor, 3) and picture.dtype == np.uint8
    big = comparison(np.zeros((500, 600, 3), np.uint8), np.zeros((0, 500, 600), bool), {})
    assert big.shape == (500, 600, 3)
    assert mean_iou(truth, truth) == 1.0 and mean_iou(~truth, truth) == 0.0


def test_scan_image_is_the_scan_at_its_size():
    ys, xs = np.mgrid[:256, :192]
    image = np.stack([ys, xs, (ys + xs) // 2], axis=-1).astype(np.uint8)  # smooth: resampling keeps it
    sample = StampSample(key="k", image=image, masks=np.zeros((0, 256, 192), bool), boxes=np.zeros((0, 4), "f4"))
    group = to_sam_frame(sample, boxes=sample.boxes)
    rebuilt = scan_image({"image": group["image"], "masks": torch.zeros(0, 256, 192, dtype=torch.bool)})
    assert rebuilt.shape == image.shape and np.abs(rebuilt.astype(int) - image).mean() < 1

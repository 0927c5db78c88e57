"""The frame ceiling: the oracle's upsampling is SAM's, and a crop lifts the ceiling on thin strokes."""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate

from samlit.data.ceiling import frame_ceiling, upsample_low_res
from samlit.data.sam_frame import to_sam_frame
from samlit.data.sample import StampSample
from samlit.model.sam import build_sam
from tests.conftest import FAST


def test_upsampling_is_sam_postprocess_masks():
    sam = build_sam(model_type="tiny")
    low = torch.randn(3, 256, 256)
    ours = upsample_low_res(low, input_size=(1024, 700), original_size=(300, 205))
    assert torch.allclose(ours, sam.postprocess_masks(low[:, None], (1024, 700), (300, 205))[:, 0])


def stroke_sample(size: int) -> StampSample:
    """A page of ``size`` px with one ring stamp of 2 px strokes in its corner."""
    masks = np.zeros((1, size, size), bool)
    ys, xs = np.mgrid[:size, :size]
    radius = np.hypot(xs - 60, ys - 60)
    masks[0] = (np.abs(radius - 40) < 1) | (np.abs(radius - 30) < 1)
    image = np.full((size, size, 3), 255, np.uint8)
    return StampSample(key="k", image=image, masks=masks, boxes=np.array([[19, 19, 101, 101]], np.float32))


def test_a_box_crop_lifts_the_ceiling_of_thin_strokes():
    page = stroke_sample(2000)
    crop = StampSample(key="c", image=page.image[15:106, 15:106], masks=page.masks[:, 15:106, 15:106], boxes=None)
    page_ceiling = frame_ceiling([to_sam_frame(page, boxes=page.boxes)])
    crop_ceiling = frame_ceiling([to_sam_frame(crop, boxes=page.boxes - 15)])
    assert page_ceiling["n_masks"] == crop_ceiling["n_masks"] == 1
    assert page_ceiling["iou"] < 0.4 < 0.8 < crop_ceiling["iou"] <= 1.0


def test_datamodule_reports_both_ceilings(compose_cfg):
    dm = instantiate(compose_cfg(*FAST).data)
    dm.prepare_data()
    dm.setup("fit")
    ceilings = dm.frame_ceilings("test")
    masks = sum(dm.stamps[f.key] for f in dm.splits["test"])
    assert ceilings["none"]["n_masks"] == ceilings["box"]["n_masks"] == masks
    assert 0 < ceilings["none"]["iou"] <= ceilings["box"]["iou"] <= 1

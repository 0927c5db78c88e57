"""The frame ceiling: the oracle's upsampling is SAM's, a crop lifts the ceiling on thin strokes, and the report's
ceilings (both frames of the test split) are the same read from the store as made from the files."""

from __future__ import annotations

import numpy as np
import torch

from samlit.data.frame import to_sam_frame
from samlit.data.sample import InstanceSample
from samlit.model.sam import build_sam
from samlit.run.ceiling import frame_ceiling, frame_ceilings, upsample_low_res
from samlit.run.prepare import prepare
from tests.run.test_prepare import cheap_encoder, fast_job


def test_upsampling_is_sam_postprocess_masks():
    sam = build_sam(model_type="tiny")
    low = torch.randn(3, 256, 256)
    ours = upsample_low_res(low, input_size=(1024, 700), original_size=(300, 205))
    assert torch.allclose(ours, sam.postprocess_masks(low[:, None], (1024, 700), (300, 205))[:, 0])


def stroke_sample(size: int) -> InstanceSample:
    """A page of ``size`` px with one ring stamp of 2 px strokes in its corner."""
    masks = np.zeros((1, size, size), bool)
    ys, xs = np.mgrid[:size, :size]
    radius = np.hypot(xs - 60, ys - 60)
    masks[0] = (np.abs(radius - 40) < 1) | (np.abs(radius - 30) < 1)
    image = np.full((size, size, 3), 255, np.uint8)
    return InstanceSample(key="k", image=image, masks=masks, boxes=np.array([[19, 19, 101, 101]], np.float32))


def test_a_box_crop_lifts_the_ceiling_of_thin_strokes():
    page = stroke_sample(2000)
    crop = InstanceSample(key="c", image=page.image[15:106, 15:106], masks=page.masks[:, 15:106, 15:106], boxes=None)
    page_ceiling = frame_ceiling([to_sam_frame(page, boxes=page.boxes)])
    crop_ceiling = frame_ceiling([to_sam_frame(crop, boxes=page.boxes - 15)])
    assert page_ceiling["n_masks"] == crop_ceiling["n_masks"] == 1
    assert page_ceiling["iou"] < 0.4 < 0.8 < crop_ceiling["iou"] <= 1.0


def test_both_ceilings_of_the_test_split_from_files_and_from_the_store(compose_cfg, monkeypatch):
    """``cache=none`` makes every item from its files; a store holds the run's frame (with features) and the other
    frame (without: ``prepare(other_frame=True)``): the ceilings are the same numbers."""
    ceilings = {}
    for cache in ("none", "disk"):
        cheap_encoder(monkeypatch)
        job = fast_job(compose_cfg, f"cache={cache}")
        prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)
        ceilings[cache] = frame_ceilings(job.datamodule, "test")
    dm = job.datamodule
    masks = sum(dm.instances[f.key] for f in dm.splits["test"])
    for found in ceilings.values():
        assert found["none"]["n_masks"] == found["box"]["n_masks"] == masks
        assert 0 < found["none"]["iou"] <= found["box"]["iou"] <= 1
    assert ceilings["disk"] == ceilings["none"]

"""Box-crop frame: the crop window, the crop item, pasting back, and that crop-mode metrics are page metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samlit.core.errors import SamlitError
from samlit.core.masks import mask_scores
from samlit.data.frame import crop_box, crop_stamp, paste
from samlit.data.sample import InstanceSample, with_ink
from samlit.data.staver import read_scan
from samlit.run.setup import build_datamodule
from tests.conftest import FAST


def test_crop_box_grows_floors_ceils_and_clips():
    box = np.array([10.5, 20.0, 30.5, 60.0])  # w 20, h 40
    assert crop_box(box, margin=0.1, image_size=(100, 200)) == (8, 16, 33, 64)  # floor(8.5), 16, ceil(32.5), 64
    assert crop_box(box, margin=0.0, image_size=(100, 200)) == (10, 20, 31, 60)
    assert crop_box(box, margin=1.0, image_size=(70, 40)) == (0, 0, 40, 70)  # clipped to the image


def test_crop_stamp_and_paste_round_trip():
    image = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:20, 5:25] = True
    masks[1, 30:50, 40:70] = True
    sample = InstanceSample(
        key="k", image=image, masks=masks, boxes=np.array([[5, 10, 25, 20], [40, 30, 70, 50]], "f4")
    )
    crop, window = crop_stamp(sample, 1, margin=0.1)
    assert crop.key == "k-s1" and window == (37, 28, 73, 52)
    assert np.array_equal(crop.image, image[28:52, 37:73]) and crop.masks.shape == (1, 24, 36)
    assert np.allclose(crop.boxes, [[3, 2, 33, 22]])
    assert np.array_equal(paste(crop.masks, window, image_size=(60, 80))[0], masks[1])


def built(cfg):
    dm = build_datamodule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_crop_metrics_equal_page_metrics(compose_cfg):
    """The crop holds its stamp's whole mask, so IoU in the crop == IoU of the prediction pasted on the page."""
    dm = built(compose_cfg(*FAST, "data.crop=box", "cache=none"))
    dataset = dm.test_dataloader().dataset
    page = with_ink(read_scan(dm.splits["test"][0]))
    for index in range(len(page.boxes)):
        group = dataset[index]
        masks = torch.from_numpy(np.asarray(group["masks"]))
        rng = np.random.default_rng(index)
        pred = torch.from_numpy(rng.random(masks.shape) > 0.7) | masks  # a noisy prediction
        pasted = paste(pred.numpy(), group["crop_box"], image_size=page.masks.shape[1:])
        crop_iou = mask_scores(pred, masks)[0]
        page_iou = mask_scores(torch.from_numpy(pasted), torch.from_numpy(page.masks[index : index + 1]))[0]
        assert group["key"] == f"{page.key}-s{index}" and torch.equal(crop_iou, page_iou)


def test_crop_mode_has_one_item_per_stamp_and_jitters_inside_the_crop(compose_cfg):
    dm = built(compose_cfg(*FAST, "data.crop=box", "data.prompts.box_jitter=0.3", "cache=none"))
    for split in ("train", "val", "test"):
        assert len(dm.dataset(split, train=False)) == sum(dm.instances[f.key] for f in dm.splits[split])
    item = dm.train_dataloader().dataset[(0, 0)]
    h, w = item["original_size"]
    (box,) = item["pixel_boxes"].tolist()
    assert len(item["boxes"]) == 1 and 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    assert len(dm.planned()) == sum(dm.instances[f.key] for s in ("train", "val", "test") for f in dm.splits[s])
    pages = dm.planned(other_frame=True)[len(dm.planned()) :]  # the report's other frame: the test pages, no features
    assert [(s, spec.instance, tag) for s, spec, _, tag in pages] == [("test", None, None)] * len(dm.splits["test"])


@pytest.mark.parametrize("override", ["data.crop=tile", "data.crop_margin=-0.1", "data.crop_margin=abc"])
def test_bad_crop_keys_are_one_line(compose_cfg, override):
    with pytest.raises(Exception) as error:
        build_datamodule(compose_cfg(*FAST, override).data)
    assert isinstance(error.value, SamlitError) or "data.crop" in str(error.value)

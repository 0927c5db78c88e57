"""Datamodule, SAM frame and box prompts on generated scans (the real reader, the real configs). Without a store
(``cache=none``) every item is made from its files; the store's side: ``test_store.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from samlit.data.frame import LOW_RES, to_sam_frame
from samlit.data.prompts import jitter_boxes
from samlit.data.sample import InstanceSample
from samlit.data.staver import find_scans, stamp_census
from samlit.run.setup import build_datamodule
from tests.conftest import FAST


def built(cfg):
    dm = build_datamodule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture
def datamodule(compose_cfg):
    return built(compose_cfg(*FAST, "cache=none"))


def test_splits_hold_exactly_the_scans_with_a_stamp(datamodule):
    """Disjointness of the split itself: ``test_splits.py``. Here: which scans reach it."""
    stampless = {f.key for f in find_scans(datamodule.root) if stamp_census(f).instances == 0}
    keys = {name: {f.key for f in files} for name, files in datamodule.splits.items()}
    assert stampless and datamodule.summary()["images_without_instance"] == len(stampless)
    assert set().union(*keys.values()) == {f.key for f in find_scans(datamodule.root)} - stampless
    assert all(keys.values())


@pytest.mark.parametrize("crop", ["none", "box"])
def test_a_batch_is_a_list_of_per_item_groups(compose_cfg, crop):
    dm = built(compose_cfg(*FAST, "cache=none", "data.batch_size=2", f"data.crop={crop}"))
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch, list) and len(batch) == 2
    for group in batch:
        n = len(group["boxes"])
        h, w = group["original_size"]
        assert n >= 1 and group["boxes"].shape == group["pixel_boxes"].shape == (n, 4)
        assert group["masks"].shape == (n, h, w) and group["masks"].dtype == torch.bool  # unpacked by the collate
        assert group["low_res_targets"].shape == (n, LOW_RES, LOW_RES)
        assert max(group["image"].shape[1:]) == 1024 and group["image"].dtype == torch.uint8
        assert tuple(group["image"].shape[1:]) == group["input_size"] and "embedding" not in group
        image_key, instance, view = group["source"]
        assert view == group["view"] == 0 and group["key"].startswith(image_key)
        if crop == "box":
            assert n == 1 and group["key"] == f"{image_key}-s{instance}" and len(group["crop_box"]) == 4
        else:
            assert instance is None and group["key"] == image_key and "crop_box" not in group


def test_frame_image_is_the_image_the_encoder_sees(compose_cfg):
    """What figures draw (``frame_image(source)``) is the group's own frame, read again from the files."""
    dm = built(compose_cfg(*FAST, "cache=none", "data.augment.views=2"))
    dataset = dm.dataset("train", train=True)
    views = set()
    for index in range(len(dataset)):
        group = dataset[(0, index)]
        assert torch.equal(dm.frame_image(group["source"]), group["image"])
        views.add(group["view"])
    assert len(views) > 1  # augmented views among them


def test_sam_frame_matches_segment_anything():
    from segment_anything.utils.transforms import ResizeLongestSide

    image = np.zeros((100, 60, 3), np.uint8)
    masks = np.zeros((1, 100, 60), bool)
    masks[0, 50:, :30] = True  # bottom-left quarter
    boxes = np.array([[0, 50, 30, 100]], np.float32)
    group = to_sam_frame(InstanceSample(key="k", image=image, masks=masks, boxes=boxes), boxes=boxes)
    assert group["input_size"] == (1024, 614) == ResizeLongestSide.get_preprocess_shape(100, 60, 1024)
    assert torch.allclose(group["boxes"], torch.tensor([[0.0, 512.0, 307.0, 1024.0]]), atol=0.5)
    low = group["low_res_targets"][0]
    assert low[128:, :76].mean() > 0.95 and low[:126].max() < 0.05 and low[:, 154:].max() < 0.05  # pad stays 0


def test_box_jitter_moves_edges_within_bounds():
    torch.manual_seed(0)
    boxes = np.array([[10, 20, 50, 80], [0, 0, 5, 5]], np.float32)
    jittered = jitter_boxes(boxes, fraction=0.2, image_size=(100, 60))
    assert not np.allclose(jittered, boxes)
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    inside = (jittered[:, [0, 2]] >= 0) & (jittered[:, [0, 2]] <= 60)
    assert inside.all() and (jittered[:, [1, 3]] <= 100).all() and (jittered[:, [1, 3]] >= 0).all()
    assert (np.abs(jittered - boxes) <= 0.2 * sides + 1e-4).all()
    assert (jittered[:, 2] > jittered[:, 0]).all() and (jittered[:, 3] > jittered[:, 1]).all()
    assert np.array_equal(jitter_boxes(boxes, fraction=0.0, image_size=(100, 60)), boxes)


def test_validation_and_test_prompts_are_not_jittered(datamodule):
    first = [g["boxes"] for b in datamodule.val_dataloader() for g in b]
    second = [g["boxes"] for b in datamodule.val_dataloader() for g in b]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("root", ["null", "''"])
def test_staver_without_root_is_a_one_line_error(compose_cfg, root):
    with pytest.raises(Exception) as err:
        build_datamodule(compose_cfg("data=staver", f"data.root={root}").data)
    message = str(err.value)
    assert "data.root" in message and "ground-truth-maps" in message


def test_num_workers_auto_takes_this_process_share_of_the_cpus(compose_cfg):
    from samlit.data.datamodule import auto_workers

    cpus = len(os.sched_getaffinity(0))
    assert auto_workers(processes=1) == min(4, cpus) and auto_workers(processes=4 * cpus) == 1
    dm = built(compose_cfg(*FAST, "data.num_workers=auto"))
    loader = dm.val_dataloader()
    assert loader.num_workers == min(4, cpus) and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()  # data.pin_memory=null: pinned where a GPU copies
    with pytest.raises(Exception, match=r"data\.num_workers='many' must be a whole number >= 0 or auto"):
        build_datamodule(compose_cfg(*FAST, "data.num_workers=many").data)

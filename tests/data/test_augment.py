"""Seeded augmentation views: deterministic, aligned (image, masks, boxes), and every one prepared up front."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from samlit.data.augment import ImageViews
from samlit.data.sample import InstanceSample
from samlit.run.setup import build_datamodule


def red_stamps(seed: int = 0, size: tuple[int, int] = (160, 200)) -> InstanceSample:
    """A scan whose red ink *is* its stamps: masks must stay equal to the red pixels after any view."""
    masks = np.zeros((2, *size), dtype=bool)
    ys, xs = np.mgrid[: size[0], : size[1]]
    radius = np.hypot((ys - 40) / 20, (xs - 60) / 30)
    masks[0] = (radius > 0.6) & (radius < 1.0)  # a ring, like a round stamp's outline
    masks[1, 90 + seed % 5 : 150, 120:180] = True
    image = np.zeros((*size, 3), dtype=np.uint8)
    image[..., 0] = masks.any(0) * 255
    image[..., 2] = 60  # a little blue everywhere, for the colour transforms to act on
    boxes = np.array([[30, 20, 90, 60], [120, 90, 180, 150]], dtype=np.float32)
    return InstanceSample(key="red", image=image, masks=masks, boxes=boxes)


@pytest.fixture
def configured(compose_cfg) -> ImageViews:
    """The pipeline of conf/data/augment/documents.yaml, composed and instantiated as a run does."""
    return instantiate(compose_cfg("data.augment.views=3").data.augment)


def check_aligned(out: InstanceSample) -> None:
    assert out.image.shape[:2] == out.masks.shape[1:] and len(out.masks) == len(out.boxes)
    red = out.image[..., 0].astype(int) - out.image[..., 1]  # the ink; white paper filled in by Affine is not red
    agreement = ((red > 127) == out.masks.any(0)).mean()
    assert agreement > 0.98, agreement
    for mask, (x0, y0, x1, y1) in zip(out.masks, out.boxes, strict=True):
        ys, xs = np.nonzero(mask)
        assert len(xs) and x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1


def test_config_builds_the_documented_pipeline(configured):
    assert configured.views == 3 and len(configured.pipeline.transforms) == 7


def test_every_transform_keeps_masks_and_boxes_on_the_image(configured):
    for transform in configured.pipeline.transforms:
        single = copy.deepcopy(transform)
        single.p = 1.0  # apply it for sure
        views = ImageViews(views=8, transforms=[single], seed=0)
        for view in range(1, 9):
            check_aligned(views(red_stamps(view), view=view))


def test_whole_pipeline_keeps_alignment(configured):
    for view in range(1, 4):
        check_aligned(configured(red_stamps(view), view=view))


def test_views_are_deterministic_and_distinct(configured):
    sample = red_stamps()
    first = [configured(sample, view=v) for v in range(4)]
    again = [configured(sample, view=v) for v in (3, 2, 1, 0)][::-1]  # order of requests does not matter
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
        assert np.array_equal(a.boxes, b.boxes)
    assert first[0].image is sample.image  # view 0 is the scan itself
    always = [copy.deepcopy(t) for t in configured.pipeline.transforms]
    for transform in always:
        transform.p = 1.0
    views = ImageViews(views=3, transforms=always, seed=0)
    assert len({views(sample, view=v).image.tobytes() for v in range(4)}) == 4
    other_seed = ImageViews(views=3, transforms=always, seed=1)
    assert not np.array_equal(other_seed(sample, view=1).image, views(sample, view=1).image)


def test_view_out_of_range_is_an_error(configured):
    with pytest.raises(IndexError, match=r"only views 0\.\.3"):
        configured(red_stamps(), view=4)


def test_stamps_pushed_out_of_the_image_are_dropped():
    import albumentations as A

    views = ImageViews(views=1, transforms=[A.Affine(translate_percent=(0.6, 0.6), p=1.0)], seed=0)
    out = views(red_stamps(), view=1)
    assert len(out.masks) == len(out.boxes) == 1  # the second stamp left the frame


def test_prepare_plans_every_view_and_training_draws_one(compose_cfg):
    cfg = compose_cfg("data.augment.views=2", "data.num_scans=6", "data.image_size=96", "cache=none")
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    items = {name: len(datamodule.items(name)) for name in datamodule.splits}  # crops or pages
    plan = datamodule.planned()
    assert len(plan) == 3 * items["train"] + items["val"] + items["test"]
    assert [spec.view for _, spec, _, _ in plan[:3]] == [0, 1, 2] and len({key for *_, key, _ in plan[:3]}) == 3
    assert {spec.view for split, spec, _, _ in plan if split != "train"} == {0}  # val and test: never augmented
    train = datamodule.train_dataloader().dataset
    torch.manual_seed(0)
    drawn = [train[0]["view"] for _ in range(30)]
    assert set(drawn) == {0, 1, 2}
    torch.manual_seed(0)
    assert [train[0]["view"] for _ in range(30)] == drawn  # seeded like the box jitter
    by_epoch = [train[(epoch, 0)]["view"] for epoch in range(12)]  # (epoch, index): the global RNG plays no part
    assert set(by_epoch) == {0, 1, 2} and [train[(epoch, 0)]["view"] for epoch in range(12)] == by_epoch
    assert datamodule.summary()["train_views_per_image"] == 3


def test_a_view_that_pushes_every_stamp_out_leaves_an_item_without_prompts():
    """A view may move every stamp off the image (stamps near the edge): the item has no box, the step skips it."""
    import albumentations as A

    from samlit.data.sample import with_ink

    views = ImageViews(views=1, transforms=[A.Affine(translate_percent=(1.5, 1.5), p=1.0)], seed=0)
    out = with_ink(views(red_stamps(), view=1))
    assert out.masks.shape[0] == out.boxes.shape[0] == 0

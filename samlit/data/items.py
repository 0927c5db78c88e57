"""The one function that prepares an item from its files: the page (all its instances) or one instance's crop, in
one augmentation view, in SAM's frame. The prepare stage (``samlit.run.prepare``) stores what it makes; with
``cache=none`` the datasets call it at every fetch (the baseline); the run layer calls it for the few frame images
a figure draws. Nothing else reads an image file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from samlit.core.digests import image_digest
from samlit.data.augment import ImageViews
from samlit.data.crops import crop_stamp
from samlit.data.sam_frame import frame_targets
from samlit.data.sample import StampSample, with_ink
from samlit.data.store import PackedMasks, PreparedItem


@dataclass(frozen=True)
class ItemSpec:
    """Which item: record ``record`` (an index into the dataset's records), ``instance`` (``None``: the page; i: the
    crop of instance i) and augmentation ``view`` (0 = the image itself)."""

    record: int
    instance: int | None
    view: int


def make_sample(
    read: Callable[[Any], StampSample],
    record: Any,
    *,
    instance: int | None,
    view: int,
    augment: ImageViews | None,
    margin: float,
) -> tuple[StampSample, tuple[int, int, int, int] | None]:
    """Read ``record`` and make one item's sample: the page (``instance`` None) or instance ``instance``'s crop
    (margin ``margin``, ``samlit.data.crops``), in augmentation view ``view``, instances without ink dropped; and
    where the crop sits on the page (``None`` for a page)."""
    sample = read(record)
    if instance is None:
        sample = augment(sample, view=view) if view else sample
        return with_ink(sample), None
    sample, window = crop_stamp(with_ink(sample), instance, margin=margin)
    return (with_ink(augment(sample, view=view)) if view else sample), window


def make_item(
    read: Callable[[Any], StampSample],
    record: Any,
    *,
    instance: int | None,
    view: int,
    augment: ImageViews | None,
    margin: float,
) -> tuple[PreparedItem, torch.Tensor]:
    """``make_sample`` in SAM's frame: the prepared item (no features) and its frame image (3, h, w) uint8, what
    the image encoder sees."""
    sample, window = make_sample(read, record, instance=instance, view=view, augment=augment, margin=margin)
    frame = frame_targets(sample)
    item = PreparedItem(
        key=frame["key"],
        image_digest=image_digest(frame["image"]),
        boxes=sample.boxes,
        masks=PackedMasks.pack(sample.masks),
        low_res_targets=frame["low_res_targets"],
        original_size=frame["original_size"],
        input_size=frame["input_size"],
        crop_box=window,
    )
    return item, frame["image"]

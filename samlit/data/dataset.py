"""Items in SAM's frame: one per scan (all its stamps, ``data.crop=none``) or one per stamp seen through a crop
around its box (``data.crop=box``, ``samlit.data.crops``); the sampler that keys items by epoch; the collate.

With an ``ItemStore`` (``cache=disk``) an item is prepared from its files once (``samlit.data.item_store``); after
that it comes from the store and carries no ``image``, only its ``image_digest``: the model reads its embedding
from the cache by that digest, and asks for the pixels (``load_frame``) only when the embedding is missing.

An item's random choices (augmentation view, box jitter, points) are a function of (seed, epoch, index) alone,
never of the global RNG, so they do not depend on when or where the item is fetched (prefetching, workers, a
resumed run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

from samlit.core.digests import image_digest
from samlit.core.seeds import stable_hash
from samlit.data.augment import ImageViews
from samlit.data.crops import CropBox, check_crop, crop_stamp
from samlit.data.item_store import ItemStore, PreparedItem, item_key, pack_masks, unpack_masks
from samlit.data.prompts import PromptSampler
from samlit.data.sam_frame import frame_prompts, frame_targets
from samlit.data.sample import StampSample, with_ink

Sample = dict[str, Any]


class StampDataset(Dataset):
    """One item per scan (all its stamps: box prompts + instance masks), or per stamp in crop mode, in SAM's
    frame (``to_sam_frame``).

    Args:
        files: the images' records (``samlit.data.source``). read: a record -> its ``StampSample`` (the source's).
        prompts: how each item's prompts are drawn (default: the exact boxes, no points: val and test).
        augment: image views (``ImageViews``); each item is one of its ``views + 1`` views, drawn at random.
        every_view: one item per (scan, view) instead, in order: what the embedding cache build walks through.
        seed: with the epoch and the index, seeds each item's random choices (view, jitter, points).
        crop: ``none`` (the page is the frame) or ``box`` (each stamp through its crop; its key is
            ``<scan key>-s<i>``, its ``crop_box`` where the crop sits on the page; views augment the crop).
        crop_margin: the crop's margin, a fraction of the box's width / height on each side.
        stamps: stamps with ink per scan (the datamodule's census), needed to list the crops.
        store: where prepared items are kept (``None``: every item is read from its files).
        identities: with ``store``, each record's identity (``ItemStore``'s keys start from it).

    An item is asked for by index, or by ``(epoch, index)`` (``EpochSampler``): then its random choices are a
    function of (seed, epoch, index) alone.
    """

    def __init__(
        self,
        files: list[Any],
        *,
        read: Callable[[Any], StampSample],
        prompts: PromptSampler | None = None,
        augment: ImageViews | None = None,
        every_view: bool = False,
        seed: int = 0,
        crop: str = "none",
        crop_margin: float = 0.1,
        stamps: Sequence[int] | None = None,
        store: ItemStore | None = None,
        identities: Sequence[str] | None = None,
    ) -> None:
        check_crop(crop, crop_margin)
        if crop == "box" and (stamps is None or len(stamps) != len(files)):
            raise ValueError("crop=box needs the number of stamps of every scan")
        if store is not None and (identities is None or len(identities) != len(files)):
            raise ValueError("an item store needs the identity of every record")
        self.store = store
        self.identities = identities
        self.files = files
        self.crop_margin = crop_margin
        self.items: list[tuple[int, int | None]] = (  # (scan index, stamp index; None: the whole page)
            [(i, s) for i, n in enumerate(stamps) for s in range(n)]
            if crop == "box"
            else [(i, None) for i in range(len(files))]
        )
        self.prompts = prompts if prompts is not None else PromptSampler()
        self.read = read
        self.augment = augment
        self.num_views = 1 + (augment.views if augment is not None else 0)
        self.every_view = every_view
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items) * (self.num_views if self.every_view else 1)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        generator = None
        if isinstance(index, tuple):
            epoch, index = index
            generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.every_view:
            index, view = divmod(index, self.num_views)
        else:
            view = int(torch.randint(self.num_views, (), generator=generator)) if self.num_views > 1 else 0
        scan, stamp = self.items[index]
        item, image = self.prepared(scan, stamp, view)
        boxes, points = self.prompts(item.masks, item.boxes, generator=generator)
        group = {
            "key": item.key,
            "image_digest": item.image_digest,
            "masks": torch.from_numpy(np.ascontiguousarray(item.masks)),
            "low_res_targets": item.low_res_targets,
            "original_size": item.original_size,
            "input_size": item.input_size,
            **frame_prompts(boxes, points, original_size=item.original_size),
            "view": view,
            "source": (self.files[scan].key, stamp, view),
        }
        if image is not None:
            group["image"] = image
        if item.crop_box is not None:
            group["crop_box"] = item.crop_box
        return group

    def prepared(self, scan: int, stamp: int | None, view: int) -> tuple[PreparedItem, torch.Tensor | None]:
        """Item (``scan``, ``stamp``, ``view``) without its prompts, and its frame image (3, h, w) uint8 when it was
        read from its files (``None`` when it came from the store)."""
        key = None
        if self.store is not None:
            key = item_key(
                self.identities[scan],
                stamp=stamp,
                crop_margin=self.crop_margin if stamp is not None else None,
                view=view,
                augment=self.augment.identity() if view else None,
            )
            stored = self.store.get(key)
            if stored is not None:
                return stored, None
        record = self.files[scan]
        sample, window = load_frame(self.read, record, stamp, view, augment=self.augment, margin=self.crop_margin)
        frame = frame_targets(sample)
        item = PreparedItem(
            key=frame["key"],
            image_digest=image_digest(frame["image"]),
            boxes=sample.boxes,
            masks=sample.masks,
            low_res_targets=frame["low_res_targets"],
            original_size=frame["original_size"],
            input_size=frame["input_size"],
            crop_box=window,
        )
        if key is not None:
            self.store.put(key, item)
        return item, frame["image"]


def load_frame(
    read: Callable[[Any], StampSample],
    record: Any,
    stamp: int | None,
    view: int,
    *,
    augment: ImageViews | None,
    margin: float,
) -> tuple[StampSample, CropBox | None]:
    """Read ``record`` and make one item's sample from it: the page (``stamp`` None) or stamp ``stamp``'s crop, in
    augmentation view ``view``, stamps without ink dropped; and where the crop sits on the page."""
    sample = read(record)
    if stamp is None:
        sample = augment(sample, view=view) if view else sample
        return with_ink(sample), None
    sample, window = crop_stamp(with_ink(sample), stamp, margin=margin)
    return (with_ink(augment(sample, view=view)) if view else sample), window


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (seed, epoch, index) item."""
    return stable_hash(seed, epoch, index) >> 1


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (seeded shuffle per epoch, this rank's share) yielding ``(epoch, index)`` keys."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def collate_samples(batch: list[Sample]) -> list[Sample]:
    """Keep a batch as a list of per-image groups: images differ in size and stamp count.

    In a loader worker the batch is handed to the main process in-band (``InBandBatch``): torch moves each tensor
    a worker returns through its own shared-memory segment, ~0.5 ms per tensor, more than a stored item takes to
    read; pickled as NumPy arrays, the same bytes cost a copy.
    """
    return InBandBatch(batch) if get_worker_info() is not None else batch


class InBandBatch(list):
    """A worker's batch whose tensors are pickled by value (as NumPy arrays; instance masks (N, H, W) bool as the
    packed bits of their windows, ``pack_masks``: a page's masks are megabytes of mostly zeros). It arrives as a
    plain list of groups with tensors again."""

    def __reduce__(self) -> tuple[Callable[..., list[Sample]], tuple[list[tuple[Sample, dict[str, str]]]]]:
        groups = []
        for group in self:
            packed, kinds = dict(group), {}
            for key, value in group.items():
                if not isinstance(value, torch.Tensor) or value.dtype == torch.bfloat16:
                    continue
                if value.dtype == torch.bool and value.ndim == 3:
                    packed[key], kinds[key] = (value.shape[1:], pack_masks(value.numpy())), "masks"
                else:
                    packed[key], kinds[key] = value.numpy(), "array"
            groups.append((packed, kinds))
        return rebuild_groups, (groups,)


def rebuild_groups(groups: list[tuple[Sample, dict[str, str]]]) -> list[Sample]:
    """``InBandBatch``'s other end: each group with its tensors back."""
    out = []
    for group, kinds in groups:
        for key, kind in kinds.items():
            if kind == "masks":
                size, packed = group[key]
                parts = (packed[k].numpy() for k in ("windows", "bits", "offsets"))
                group[key] = torch.from_numpy(unpack_masks(*parts, size=tuple(size)))
            else:
                group[key] = torch.from_numpy(group[key])
        out.append(group)
    return out

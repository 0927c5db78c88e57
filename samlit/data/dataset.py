"""One item per scan (all its stamps, in SAM's frame), the sampler that keys items by epoch, and the collate.

An item's random choices (augmentation view, box jitter, points) are a function of (seed, epoch, index) alone,
never of the global RNG, so they do not depend on when or where the item is fetched (prefetching, workers, a
resumed run).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from samlit.core.seeds import stable_hash
from samlit.data.augment import ImageViews
from samlit.data.prompts import PromptSampler
from samlit.data.sam_frame import to_sam_frame
from samlit.data.staver import ScanFiles, read_scan, with_ink

Sample = dict[str, Any]


class StampDataset(Dataset):
    """One item per scan: all its stamps (box prompts + instance masks) in SAM's frame, see ``to_sam_frame``.

    Args:
        files: the scans.
        prompts: how each item's prompts are drawn (default: the exact boxes, no points: val and test).
        min_region_area: region-map components smaller than this (px) are noise, not stamps.
        augment: image views (``ImageViews``); each item is one of its ``views + 1`` views, drawn at random.
        every_view: one item per (scan, view) instead, in order: what the embedding cache build walks through.
        seed: with the epoch and the index, seeds each item's random choices (view, jitter, points).

    An item is asked for by index, or by ``(epoch, index)`` (``EpochSampler``): then its random choices are a
    function of (seed, epoch, index) alone.
    """

    def __init__(
        self,
        files: list[ScanFiles],
        *,
        prompts: PromptSampler | None = None,
        min_region_area: int = 16,
        augment: ImageViews | None = None,
        every_view: bool = False,
        seed: int = 0,
    ) -> None:
        self.files = files
        self.prompts = prompts if prompts is not None else PromptSampler()
        self.min_region_area = min_region_area
        self.augment = augment
        self.num_views = 1 + (augment.views if augment is not None else 0)
        self.every_view = every_view
        self.seed = seed

    def __len__(self) -> int:
        return len(self.files) * (self.num_views if self.every_view else 1)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        generator = None
        if isinstance(index, tuple):
            epoch, index = index
            generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.every_view:
            index, view = divmod(index, self.num_views)
        else:
            view = int(torch.randint(self.num_views, (), generator=generator)) if self.num_views > 1 else 0
        sample = read_scan(self.files[index], min_region_area=self.min_region_area)
        if view:
            sample = self.augment(sample, view=view)
        sample = with_ink(sample)
        boxes, points = self.prompts(sample.masks, sample.boxes, generator=generator)
        return {**to_sam_frame(sample, boxes=boxes, points=points), "view": view}


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (seed, epoch, index) item."""
    return stable_hash(seed, epoch, index) >> 1


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (seeded shuffle per epoch, this rank's share) yielding ``(epoch, index)`` keys."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def collate_samples(batch: list[Sample]) -> list[Sample]:
    """Keep a batch as a list of per-image groups: images differ in size and stamp count."""
    return batch

"""Datasets of items in SAM's frame, one per image (all its instances, ``data.crop=none``) or one per instance seen
through a crop around its box (``data.crop=box``); the sampler that keys items by epoch; the collate.

``ItemDataset`` reads prepared entries from the store (``samlit.data.store``) and never writes: each group carries
its frame's ``embedding``, so the embedding is read in the loader's workers and pinned by the loader. Without a
store (``cache=none``, the baseline) it makes each item from its files (``make_item``) and the
group carries the frame ``image`` instead. ``PrepareDataset`` is what the prepare stage walks through: the items
whose entries are missing, made from their files. ``make_item`` is the one function that makes an item from its
files (the page or one instance's crop, in one augmentation view, in SAM's frame): the prepare stage, the
``cache=none`` baseline and the run layer's figures (``make_sample``) all go through it.

An item's random choices (augmentation view, box jitter, points) are a function of (seed, epoch, index) alone,
never of the global RNG, so they do not depend on when or where the item is fetched (prefetching, workers, a
resumed run). The keys of a group: ``samlit.core.batch.Group``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

from samlit.core.batch import Group
from samlit.core.digests import image_digest
from samlit.core.errors import SamlitError
from samlit.core.seeds import stable_hash
from samlit.data.augment import ImageViews
from samlit.data.frame import crop_stamp, frame_prompts, frame_targets
from samlit.data.prompts import PromptSampler
from samlit.data.sample import InstanceSample, with_ink
from samlit.data.store import MappedTensor, PackedMasks, PreparedItem, Store


@dataclass(frozen=True)
class ItemSpec:
    """Which item: record ``record`` (an index into the dataset's records), ``instance`` (``None``: the page; i: the
    crop of instance i) and augmentation ``view`` (0 = the image itself)."""

    record: int
    instance: int | None
    view: int


def make_sample(
    read: Callable[[Any], InstanceSample],
    record: Any,
    *,
    instance: int | None,
    view: int,
    augment: ImageViews | None,
    margin: float,
) -> tuple[InstanceSample, tuple[int, int, int, int] | None]:
    """Read ``record`` and make one item's sample: the page (``instance`` None) or instance ``instance``'s crop
    (margin ``margin``, ``samlit.data.frame``), in augmentation view ``view``, instances without ink dropped; and
    where the crop sits on the page (``None`` for a page)."""
    sample = read(record)
    if instance is None:
        sample = augment(sample, view=view) if view else sample
        return with_ink(sample), None
    sample, window = crop_stamp(with_ink(sample), instance, margin=margin)
    return (with_ink(augment(sample, view=view)) if view else sample), window


def make_item(
    read: Callable[[Any], InstanceSample],
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


class ItemDataset(Dataset):
    """Items in SAM's frame with their prompts.

    Args:
        records: the images' records (``samlit.data.source``); read: a record -> its ``InstanceSample`` (the source's).
        items: (record index, instance index or ``None`` for the page) per item.
        views: augmentation views per item besides the image itself; each fetch draws one of ``views + 1``.
        store: where the prepared entries are (``None``: every item is made from its files).
        keys: with ``store``, each item's entry key per view (``keys[item][view]``).
        feature_names: the features of each entry put into its group: ``("embedding",)``, in HQ mode also
            ``"interm_embedding"``; ``()`` when the run keeps them on its device (the group names them by
            ``image_digest``). An entry without one of them is a SamlitError naming ``python prepare.py``.
        prompts: how each item's prompts are drawn (default: the exact boxes, no points: val and test).
        augment: image views (``ImageViews``), to make items from files. margin: the crop margin (crop mode).
        every_view: one item per (item, view) instead, in order.
        seed: with the epoch and the index, seeds each item's random choices (view, jitter, points).

    An item is asked for by index, or by ``(epoch, index)`` (``EpochSampler``): then its random choices are a
    function of (seed, epoch, index) alone.
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        read: Callable[[Any], InstanceSample],
        items: Sequence[tuple[int, int | None]],
        views: int = 0,
        store: Store | None = None,
        keys: Sequence[Sequence[str]] | None = None,
        feature_names: Sequence[str] = ("embedding",),
        prompts: PromptSampler | None = None,
        augment: ImageViews | None = None,
        margin: float = 0.1,
        every_view: bool = False,
        seed: int = 0,
    ) -> None:
        if store is not None and (keys is None or len(keys) != len(items)):
            raise ValueError("a store needs the entry keys of every item")
        self.records = records
        self.read = read
        self.items = list(items)
        self.num_views = 1 + views
        self.store = store
        self.keys = keys
        self.feature_names = tuple(feature_names)
        self.prompts = prompts if prompts is not None else PromptSampler()
        self.augment = augment
        self.margin = margin
        self.every_view = every_view
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items) * (self.num_views if self.every_view else 1)

    def __getitem__(self, index: int | tuple[int, int]) -> Group:
        generator = None
        if isinstance(index, tuple):
            epoch, index = index
            generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.every_view:
            index, view = divmod(index, self.num_views)
        else:
            view = int(torch.randint(self.num_views, (), generator=generator)) if self.num_views > 1 else 0
        record, instance = self.items[index]
        image = None
        if self.store is not None:
            what = f"item {self.records[record].key} (instance {instance}, view {view})"
            # in a loader worker the embedding is handed over as where it lies in the entry's file (MappedTensor)
            item = self.store.get(self.keys[index][view], what=what, map_features=get_worker_info() is not None)
        else:
            item, image = make_item(
                self.read, self.records[record], instance=instance, view=view, augment=self.augment, margin=self.margin
            )
        boxes, points = self.prompts(item.masks, item.boxes, generator=generator)
        group: Group = {
            "key": item.key,
            "source": (self.records[record].key, instance, view),
            "view": view,
            "image_digest": item.image_digest,
            "masks": item.masks,  # packed: the collate unpacks them once, in the main process
            "low_res_targets": item.low_res_targets,
            "original_size": item.original_size,
            "input_size": item.input_size,
            **frame_prompts(boxes, points, original_size=item.original_size),
        }
        if image is not None:
            group["image"] = image
        if self.store is not None:
            for name in self.feature_names:
                if name not in item.features:
                    raise SamlitError(
                        f"{self.store.path(self.keys[index][view])} holds no {name} ({what}): it was prepared for "
                        "another model mode; run python prepare.py with this command's overrides"
                    )
                group[name] = item.features[name]
        if item.crop_box is not None:
            group["crop_box"] = item.crop_box
        return group


class PrepareDataset(Dataset):
    """The items the prepare stage still has to make: ``specs[i]`` made from its files, to be stored as ``keys[i]``
    with the frozen model's features ``features`` (a ``Store.features_tag``; ``None``: without features).

    Returns ``{"key": entry key, "item": PreparedItem, "image": (3, h, w) uint8, "features": features}``.
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        read: Callable[[Any], InstanceSample],
        specs: Sequence[ItemSpec],
        keys: Sequence[str],
        features: str | None = None,
        augment: ImageViews | None = None,
        margin: float = 0.1,
    ) -> None:
        self.records, self.read, self.specs, self.keys = records, read, list(specs), list(keys)
        self.features, self.augment, self.margin = features, augment, margin

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec = self.specs[index]
        item, image = make_item(
            self.read,
            self.records[spec.record],
            instance=spec.instance,
            view=spec.view,
            augment=self.augment,
            margin=self.margin,
        )
        return {"key": self.keys[index], "item": item, "image": image, "features": self.features}


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (seed, epoch, index) item."""
    return stable_hash(seed, epoch, index) >> 1


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (seeded shuffle per epoch, this rank's share) yielding ``(epoch, index)`` keys."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def collate_samples(batch: list[Group]) -> list[Group]:
    """Keep a batch as a list of per-item groups: items differ in size and instance count.

    In a loader worker the batch is handed to the main process in-band (``InBandBatch``): torch moves each tensor
    a worker returns through its own shared-memory segment, ~0.5 ms per tensor, more than a stored item takes to
    read; pickled as NumPy arrays, the same bytes cost a copy. Packed masks are unpacked on arrival (in-process:
    here).
    """
    return InBandBatch(batch) if get_worker_info() is not None else [unpacked(group) for group in batch]


def unpacked(group: dict[str, Any]) -> dict[str, Any]:
    """``group`` with its ``PackedMasks`` as (N, H, W) bool tensors and its ``MappedTensor``s mapped."""
    for key, value in group.items():
        if isinstance(value, PackedMasks):
            group[key] = torch.from_numpy(value.unpack())
        elif isinstance(value, MappedTensor):
            group[key] = value.load()
    return group


class InBandBatch(list):
    """A worker's batch whose tensors are pickled by value (as NumPy arrays; masks stay packed, an embedding is a
    ``MappedTensor``: where it lies in its entry's file). It arrives as a plain list of groups with tensors again."""

    def __reduce__(self) -> tuple[Callable[..., list[Group]], tuple[list[tuple[dict[str, Any], list[str]]]]]:
        groups = []
        for group in self:
            arrays = [k for k, v in group.items() if isinstance(v, torch.Tensor) and v.dtype != torch.bfloat16]
            groups.append(({**group, **{k: group[k].numpy() for k in arrays}}, arrays))
        return rebuild_groups, (groups,)


def rebuild_groups(groups: list[tuple[dict[str, Any], list[str]]]) -> list[Group]:
    """``InBandBatch``'s other end: each group with its tensors back and its masks unpacked."""
    return [unpacked({**group, **{k: torch.from_numpy(group[k]) for k in arrays}}) for group, arrays in groups]

"""The one LightningDataModule (``InstanceDataModule``) over any ``Source`` (a nested ``data.source`` config node:
StaVer, generated scans in its layout, COCO instance JSON, image/label folders): it finds and checks the images,
splits them, names every item's store entry, and hands out ``ItemDataset`` loaders that read those entries
(``samlit.data.dataset``). It never writes the store: the prepare stage (``samlit.run.prepare``) does, over
``prepare_dataset``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from samlit.core.digests import FileDigests
from samlit.core.errors import SamlitError
from samlit.core.images import MAX_IMAGE_PIXELS, OPENCV_MAX_PIXELS, image_memory
from samlit.data.augment import ImageViews
from samlit.data.checks import BadFile
from samlit.data.dataset import EpochSampler, ItemDataset, ItemSpec, PrepareDataset, collate_samples, make_sample
from samlit.data.frame import check_crop, frame_image
from samlit.data.prompts import PromptSampler
from samlit.data.sample import InstanceCensus
from samlit.data.source import Source
from samlit.data.splits import split_keys
from samlit.data.store import FILE_INDEX, Store, entry_key

log = logging.getLogger(__name__)


class InstanceDataModule(L.LightningDataModule):
    """Images with instances from a ``Source`` (StaVer, COCO, image/label folders), split deterministically into
    train / val / test by image stem and ``seed`` (or by the source's own split).

    Left out of every split, and counted in ``summary()``: bad files (skipped with a warning, or an error with
    ``on_bad_file="raise"``) and images without an instance (a box prompt needs an instance, a mask needs ink).
    Empty instances and specks below the source's ``min_area`` are counted and never become prompts.

    Args:
        source: the data layout's reader (``samlit.data.source.Source``).
        batch_size: items per step. seed: decides the split (and, with the epoch, each training item's random
            choices). val_fraction, test_fraction: shares of the images with an instance held out for val and test.
        prompts: training prompts (``data.prompts``: box jitter, points); val and test get the exact boxes.
        augment: training image views. on_bad_file: ``skip`` (warn, count) or ``raise`` on a bad file: one that
            is missing, cannot be opened, read or decoded, or is too big.
        max_image_pixels: an image with more pixels is a bad file, found from its header before any decoding (the
            default, 300 M px, admits a 600-dpi A1 page). Once read, an image takes 3 bytes a pixel ((H, W, 3)
            uint8; twice that while it is read): 0.51 GiB for a 14000 x 13000 scan, 0.84 GiB at the default, and
            each of its instance masks 1 byte a pixel more in the page frame (``samlit.core.images.image_memory``);
            at most OpenCV's own limit (2**30 px: 3 GiB, raised by OPENCV_IO_MAX_IMAGE_PIXELS).
        crop, crop_margin: the frame each instance is seen through: ``none`` = the image, ``box`` = one item per
            instance, cropped around its box grown by ``crop_margin`` of its sides (``samlit.data.frame``).
        store: where the prepared entries are (the ``cache`` group, ``samlit.data.store.Store``); ``None`` or mode
            ``none``: every item is made from its files at every fetch and carries its image (the baseline).
        pin_memory: page-locked batches for faster host-to-GPU copies (``None``: when CUDA is available).
        num_workers: loader worker processes (persistent), or ``auto`` (``auto_workers``).
    """

    def __init__(
        self,
        *,
        source: Source,
        batch_size: int = 1,
        num_workers: int | str = 0,
        seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        prompts: PromptSampler | None = None,
        augment: ImageViews | None = None,
        on_bad_file: str = "skip",
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        crop: str = "none",
        crop_margin: float = 0.1,
        store: Store | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        check_crop(crop, crop_margin)
        checked = (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("seed", seed, 0))
        for key, value, least in checked:
            if key == "num_workers" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                also = " or auto" if key == "num_workers" else ""
                raise SamlitError(f"data.{key}={value!r} must be a whole number >= {least}{also}")
        good = isinstance(max_image_pixels, int) and not isinstance(max_image_pixels, bool)
        if not good or not 1 <= max_image_pixels <= OPENCV_MAX_PIXELS:
            raise SamlitError(
                f"data.max_image_pixels={max_image_pixels!r} must be a whole number in [1, {OPENCV_MAX_PIXELS}] "
                f"(OpenCV reads no larger image; {image_memory(OPENCV_MAX_PIXELS)} as RGB): e.g. 300000000"
            )
        self.source = source
        self.root = source.root
        self.min_region_area = source.min_area
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.prompts = prompts if prompts is not None else PromptSampler(box_jitter=0.1)
        self.augment = augment if augment is not None and augment.views > 0 else None
        self.on_bad_file = on_bad_file
        self.max_image_pixels = max_image_pixels
        self.crop = crop
        self.crop_margin = crop_margin
        self.splits: dict[str, list[Any]] = {}
        self.num_without_instance = 0
        self.bad_images: list[BadFile] = []
        self.stray_files: list[str] = []
        self.census: dict[str, InstanceCensus] = {}
        self.instances: dict[str, int] = {}  # instances with ink per image key
        self.store = store if store is not None and store.enabled else None
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.features: str | None = None  # the frozen model's features tag (Store.features_tag), set by the run
        # the features each group carries (the run's model says which; () when the run keeps them on its device)
        self.feature_names: tuple[str, ...] = ("embedding",)
        self._identities: dict[str, str] = {}  # record key -> identity (store keys)

    def prepare_data(self) -> None:
        self.source.prepare()  # data=synthetic: generate the scans once
        self.source.find()  # fail fast, with one line, on a missing or wrong root

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        found = self.source.find()
        self.stray_files = self.source.stray(found)
        if self.stray_files:
            shown = "; ".join(self.stray_files[:3]) + ("; ..." if len(self.stray_files) > 3 else "")
            log.warning("%d files under %s are not used: %s (all: data.stray_files in metrics.json)",
                        len(self.stray_files), self.root, shown)  # fmt: skip
        files, self.bad_images = self.source.check(
            found, on_bad_file=self.on_bad_file, max_pixels=self.max_image_pixels
        )
        self.census = {f.key: self.source.census(f) for f in files}
        self.instances = {key: census.instances for key, census in self.census.items()}
        self.source.warn(self.census.values())
        with_instance = [f for f in files if self.instances[f.key] > 0]
        self.num_without_instance = len(files) - len(with_instance)
        if not with_instance:
            census = self.census.values()
            raise SamlitError(
                f"no image under {self.root} holds an instance with ink: {len(files)} images read "
                f"({len(self.bad_images)} bad files skipped), {sum(c.without_ink for c in census)} instances "
                f"without ink, {sum(c.below_min_area for c in census)} below data.min_region_area="
                f"{self.min_region_area} px; {self.source.no_instance_hint()}, or add images (data.num_scans for "
                "synthetic data)"
            )
        by_key = {f.key: f for f in with_instance}
        given = self.source.user_splits()
        if given is not None:
            keys = {name: sorted(k for k in given.get(name, ()) if k in by_key) for name in ("train", "val", "test")}
        else:
            keys = split_keys(
                list(by_key), seed=self.seed, val_fraction=self.val_fraction, test_fraction=self.test_fraction
            )
        self.splits = {name: [by_key[k] for k in split] for name, split in keys.items()}

    def require_splits(self, *names: str) -> None:
        """One line naming the fraction to raise when one of ``names`` holds no image (train.py needs val and test)."""
        for name in names:
            if not self.splits[name]:
                with_instance = sum(len(files) for files in self.splits.values())
                raise SamlitError(
                    f"the {name} split is empty ({with_instance} images with an instance, "
                    f"data.{name}_fraction={getattr(self, f'{name}_fraction')}); it needs at least one image: raise "
                    f"data.{name}_fraction or add images with instances (data.num_scans for synthetic data)"
                )

    def summary(self) -> dict[str, Any]:
        """Counts for the report: images and instances per split, images left out (bad files, no instance)."""
        return {
            "root": str(self.root),
            "images_without_instance": self.num_without_instance,
            "bad_images": len(self.bad_images),
            "bad_files": [bad.problem for bad in self.bad_images],
            "stray_files": self.stray_files,
            "instances_without_ink": sum(c.without_ink for c in self.census.values()),
            "instances_below_min_area": sum(c.below_min_area for c in self.census.values()),
            **self.source.counts(self.census.values()),
            **{f"{name}_images": len(files) for name, files in self.splits.items()},
            **{f"{name}_instances": sum(self.instances[f.key] for f in files) for name, files in self.splits.items()},
            "train_views_per_image": 1 + (self.augment.views if self.augment else 0),
            "crop": self.crop,
            "crop_margin": self.crop_margin if self.crop == "box" else None,
        }

    @property
    def num_views(self) -> int:
        """Augmentation views of a training item besides the image itself."""
        return self.augment.views if self.augment is not None else 0

    def items(self, split: str, *, crop: str | None = None) -> list[tuple[int, int | None]]:
        """(record index, instance index or ``None``) of every item of ``split``: one per image, or per instance
        with ``crop=box`` (``crop``: another frame than the run's)."""
        if (crop or self.crop) == "box":
            return [(i, s) for i, f in enumerate(self.splits[split]) for s in range(self.instances[f.key])]
        return [(i, None) for i in range(len(self.splits[split]))]

    def entry_keys(
        self, split: str, *, train: bool, crop: str | None = None, features: str | None = "run"
    ) -> list[list[str]]:
        """Each item's store key per view (``keys[item][view]``; val and test items have view 0 only).
        ``features``: the features tag the entries hold (default ``"run"``: ``self.features``; ``None``: items
        prepared without features, e.g. the report's other frame)."""
        crop = crop or self.crop
        tag = self.features if features == "run" else features
        views = 1 + (self.num_views if train else 0)
        files = self.splits[split]
        identities = self.identities(files)
        keys = []
        for record, instance in self.items(split, crop=crop):
            frame = {"instance": instance, "margin": self.crop_margin if instance is not None else None}
            keys.append(
                [
                    entry_key(
                        identities[record],
                        frame={**frame, "view": v, "augment": self.augment.identity() if v else None},
                        features=tag,
                    )
                    for v in range(views)
                ]
            )
        return keys

    def dataset(self, split: str, *, train: bool, crop: str | None = None, features: str | None = "run") -> ItemDataset:
        """The items of ``split``: training items draw a view and jittered prompts; val / test get view 0 and
        the exact boxes. ``crop``, ``features``: see ``entry_keys``."""
        crop = crop or self.crop
        return ItemDataset(
            self.splits[split],
            read=self.source.read,
            items=self.items(split, crop=crop),
            views=self.num_views if train else 0,
            store=self.store,
            keys=self.entry_keys(split, train=train, crop=crop, features=features) if self.store else None,
            feature_names=self.feature_names if features is not None else (),
            prompts=self.prompts if train else None,
            augment=self.augment if train else None,
            margin=self.crop_margin,
            seed=self.seed,
        )

    def planned(
        self, *, splits: tuple[str, ...] = ("train", "val", "test"), other_frame: bool = False
    ) -> list[tuple[str, ItemSpec, str, str | None]]:
        """Every entry a command reads: (split, item, key, features tag) for each training item's views, the val and
        test items of ``splits`` (with features) and, with ``other_frame``, the test items in the other frame
        (without features: the report's frame ceiling reads them)."""
        plan = []
        views = [(split, split == "train", self.crop, "run") for split in splits]
        if other_frame:
            views.append(("test", False, "none" if self.crop == "box" else "box", None))
        for split, train, crop, features in views:
            keys = self.entry_keys(split, train=train, crop=crop, features=features)
            tag = self.features if features == "run" else None
            for (record, instance), per_view in zip(self.items(split, crop=crop), keys, strict=True):
                plan += [(split, ItemSpec(record, instance, v), key, tag) for v, key in enumerate(per_view)]
        return plan

    def prepare_dataset(
        self, split: str, specs: list[ItemSpec], keys: list[str], *, features: str | None
    ) -> PrepareDataset:
        """The prepare stage's dataset over ``specs`` of ``split`` (to be stored as ``keys`` with ``features``)."""
        return PrepareDataset(
            self.splits[split],
            read=self.source.read,
            specs=specs,
            keys=keys,
            features=features,
            augment=self.augment,
            margin=self.crop_margin,
        )

    def identity(self, record: Any) -> str:
        """A record's identity (the start of its entries' keys): ``identities`` of one record."""
        return self.identities([record])[0]

    def identities(self, records: list[Any]) -> list[str]:
        """Each record's identity: its files' content digests (hashed once, then known by size + mtime,
        ``FileDigests``, whose index is read and written once per call) and every other input of the source
        (``Source.depends_on``)."""
        missing = [r for r in records if r.key not in self._identities]
        if missing:
            digests = FileDigests(self.store.root / FILE_INDEX) if self.store is not None else None
            for record in missing:
                paths, inputs = self.source.depends_on(record)
                files = [digests.digest(p) for p in paths] if digests is not None else [str(p) for p in paths]
                text = json.dumps({"key": record.key, "files": files, "inputs": inputs}, default=str)
                self._identities[record.key] = hashlib.sha256(text.encode()).hexdigest()
            if digests is not None:
                digests.save()
        return [self._identities[r.key] for r in records]

    def frame_image(self, source: tuple[str, int | None, int]) -> torch.Tensor:
        """The frame image (3, h, w) uint8 of an item's ``source`` (image key, instance, view), read from its
        files: the run layer draws figures on the few it needs."""
        key, instance, view = source
        record = next(f for files in self.splits.values() for f in files if f.key == key)
        sample, _ = make_sample(
            self.source.read, record, instance=instance, view=view, augment=self.augment, margin=self.crop_margin
        )
        return frame_image(sample.image)

    def loader(self, dataset: Dataset, *, shuffle: bool) -> DataLoader:
        """Under DDP, Lightning gives the training loader a ``DistributedSampler``; val and test get an unrepeated
        one here (Lightning's default pads ranks with repeated items, which would count them twice).

        The training loader is a ``StatefulDataLoader`` over an ``EpochSampler``: the order and each item's random
        choices are functions of (``seed``, epoch, index) only, never of the global RNG. Lightning saves the
        loader's position in every checkpoint, so a run resumed from a mid-epoch checkpoint (Ctrl-C, SIGTERM) sees
        the rest of that epoch's items, and the next epochs, as an unbroken run does.
        """
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        world, rank = (torch.distributed.get_world_size(), torch.distributed.get_rank()) if distributed else (1, 0)
        loader, extra = DataLoader, {}
        if shuffle:
            sampler = EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            if self.trainer is not None:  # Lightning makes the iterator before its own set_epoch when resuming
                sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
            loader, extra = StatefulDataLoader, {"generator": torch.Generator().manual_seed(self.seed)}
        elif distributed:
            if len(dataset) < world:
                raise SamlitError(
                    f"{len(dataset)} items in a val/test split for {world} DDP processes: every process needs one; "
                    "use more images (data.val_fraction / data.test_fraction) or fewer trainer.devices"
                )
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        else:
            sampler = None
        workers = self.num_workers
        if workers == "auto":  # DDP processes on this node: one per GPU (all of them on a CPU-only machine)
            workers = auto_workers(processes=min(world, torch.cuda.device_count() or world))
        return loader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            **extra,
            num_workers=workers,
            collate_fn=collate_samples,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("train", train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("val", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("test", train=False), shuffle=False)


def auto_workers(*, processes: int, most: int = 4) -> int:
    """``data.num_workers=auto``: this process's share of the CPUs it may use (``processes`` training processes on
    this node), at most ``most``: from a prepared store a worker reads an item in about a millisecond, so a
    few keep any decoder step fed; more only cost start-up time and memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(most, cpus // max(1, processes)))

"""The one LightningDataModule (``StampDataModule``) over any ``Source``: it finds and checks the images, splits
them and hands out ``StampDataset`` loaders (``samlit.data.dataset``). Thin subclasses only build their source from
their config keys: StaVer (``data=staver``), generated scans in the StaVer layout (``data=synthetic``), COCO
instance JSON (``data=coco``) and image/label folders (``data=folder``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from samlit.core.digests import FileDigests
from samlit.core.errors import SamlitError
from samlit.data.augment import ImageViews
from samlit.data.ceiling import frame_ceiling
from samlit.data.checks import BadScan
from samlit.data.coco import CocoSource
from samlit.data.crops import check_crop
from samlit.data.dataset import EpochSampler, StampDataset, collate_samples, load_frame
from samlit.data.folder import FolderSource
from samlit.data.item_store import FILE_INDEX, ItemStore
from samlit.data.prompts import PromptSampler
from samlit.data.sam_frame import frame_image
from samlit.data.sample import StampCensus
from samlit.data.source import Source
from samlit.data.splits import split_keys
from samlit.data.staver import StaverSource
from samlit.data.synthetic import generate_synthetic_staver

log = logging.getLogger(__name__)


class StampDataModule(L.LightningDataModule):
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
        augment: training image views. on_bad_file: ``skip`` (warn, count) or ``raise`` on a bad file.
        crop, crop_margin: the frame each instance is seen through: ``none`` = the image, ``box`` = one item per
            instance, cropped around its box grown by ``crop_margin`` of its sides (``samlit.data.crops``).
        item_store: the folder of prepared items (``samlit.data.item_store``; ``cache=disk`` sets it next to the
            embeddings): with a warm store the loaders decode no image. ``None``: every item is read from its files.
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
        crop: str = "none",
        crop_margin: float = 0.1,
        item_store: str | Path | None = None,
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
        self.crop = crop
        self.crop_margin = crop_margin
        self.splits: dict[str, list[Any]] = {}
        self.num_without_stamp = 0
        self.bad_scans: list[BadScan] = []
        self.stray_files: list[str] = []
        self.census: dict[str, StampCensus] = {}
        self.stamps: dict[str, int] = {}  # instances with ink per image key
        self.store = ItemStore(root=item_store) if item_store is not None else None
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._identities: dict[str, str] = {}  # record key -> identity (item store)

    def prepare_data(self) -> None:
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
        files, self.bad_scans = self.source.check(found, on_bad_file=self.on_bad_file)
        self.census = {f.key: self.source.census(f) for f in files}
        self.stamps = {key: census.stamps for key, census in self.census.items()}
        self.source.warn(self.census.values())
        with_stamp = [f for f in files if self.stamps[f.key] > 0]
        self.num_without_stamp = len(files) - len(with_stamp)
        if not with_stamp:
            census = self.census.values()
            raise SamlitError(
                f"no image under {self.root} holds an instance with ink: {len(files)} images read "
                f"({len(self.bad_scans)} bad files skipped), {sum(c.without_ink for c in census)} instances "
                f"without ink, {sum(c.below_min_area for c in census)} below data.min_region_area="
                f"{self.min_region_area} px; {self.source.no_instance_hint()}, or add images (data.num_scans for "
                "synthetic data)"
            )
        by_key = {f.key: f for f in with_stamp}
        given = self.source.user_splits()
        if given is not None:
            keys = {name: sorted(k for k in given.get(name, ()) if k in by_key) for name in ("train", "val", "test")}
        else:
            keys = split_keys(
                list(by_key), seed=self.seed, val_fraction=self.val_fraction, test_fraction=self.test_fraction
            )
        self.splits = {name: [by_key[k] for k in split] for name, split in keys.items()}

    def require_splits(self, *names: str) -> None:
        """One line naming the fraction to raise when one of ``names`` holds no scan (train.py needs val and test)."""
        for name in names:
            if not self.splits[name]:
                with_stamp = sum(len(files) for files in self.splits.values())
                raise SamlitError(
                    f"the {name} split is empty ({with_stamp} scans with a stamp, "
                    f"data.{name}_fraction={getattr(self, f'{name}_fraction')}); it needs at least one scan: raise "
                    f"data.{name}_fraction or add scans with stamps (data.num_scans for synthetic data)"
                )

    def summary(self) -> dict[str, Any]:
        """Counts for the report: scans per split and scans skipped for having no stamp."""
        return {
            "root": str(self.root),
            "scans_without_stamp": self.num_without_stamp,
            "bad_scans": len(self.bad_scans),
            "bad_files": [bad.problem for bad in self.bad_scans],
            "stray_files": self.stray_files,
            "regions_without_ink": sum(c.without_ink for c in self.census.values()),
            "regions_below_min_area": sum(c.below_min_area for c in self.census.values()),
            **self.source.counts(self.census.values()),
            **{f"{name}_scans": len(files) for name, files in self.splits.items()},
            **{f"{name}_stamps": sum(self.stamps[f.key] for f in files) for name, files in self.splits.items()},
            "train_views_per_scan": 1 + (self.augment.views if self.augment else 0),
            "crop": self.crop,
            "crop_margin": self.crop_margin if self.crop == "box" else None,
        }

    def dataset(self, split: str, *, train: bool) -> StampDataset:
        return StampDataset(
            self.splits[split],
            read=self.source.read,
            prompts=self.prompts if train else None,
            augment=self.augment if train else None,
            seed=self.seed,
            **self._frame(split),
            **self._stored(self.splits[split]),
        )

    def _stored(self, files: list[Any]) -> dict[str, Any]:
        """The item-store keys of a ``StampDataset`` over ``files``: the store and each record's identity (its
        files' content digests, known by size + mtime, and the source's other inputs)."""
        if self.store is None:
            return {}
        missing = [f for f in files if f.key not in self._identities]
        if missing:
            digests = FileDigests(self.store.root / FILE_INDEX)
            for record in missing:
                paths, inputs = self.source.depends_on(record)
                files_digest = [digests.digest(p) for p in paths]
                text = json.dumps({"key": record.key, "files": files_digest, "inputs": inputs}, default=str)
                self._identities[record.key] = hashlib.sha256(text.encode()).hexdigest()
            digests.save()
        return {"store": self.store, "identities": [self._identities[f.key] for f in files]}

    def load_frame(self, source: tuple[str, int | None, int]) -> torch.Tensor:
        """The frame image (3, h, w) uint8 of an item's ``source`` (record key, stamp, view): read from its files,
        for an item that came from the store without one (its embedding was missing; figures)."""
        key, stamp, view = source
        record = next(f for files in self.splits.values() for f in files if f.key == key)
        sample, _ = load_frame(self.source.read, record, stamp, view, augment=self.augment, margin=self.crop_margin)
        return frame_image(sample.image)

    def _frame(self, split: str, *, crop: str | None = None) -> dict[str, Any]:
        """The crop keys of a ``StampDataset`` over ``split`` (``crop``: another frame than the run's)."""
        stamps = [self.stamps[f.key] for f in self.splits[split]]
        return {"crop": crop or self.crop, "crop_margin": self.crop_margin, "stamps": stamps}

    def frame_ceilings(self, split: str = "test") -> dict[str, Any]:
        """Oracle IoU of ``split`` through the page and through box crops (``samlit.data.ceiling``)."""
        files = self.splits[split]
        return {
            crop: frame_ceiling(
                StampDataset(files, read=self.source.read, **self._frame(split, crop=crop), **self._stored(files))
            )
            for crop in ("none", "box")
        }

    def _loader(self, dataset: Dataset, *, shuffle: bool) -> DataLoader:
        """Under DDP, Lightning gives the training loader a ``DistributedSampler``; val and test get an unrepeated
        one here (Lightning's default pads ranks with repeated scans, which would count them twice).

        The training loader is a ``StatefulDataLoader`` over an ``EpochSampler``: the order and each item's random
        choices are functions of (``seed``, epoch, index) only, never of the global RNG. Lightning saves the
        loader's position in every checkpoint, so a run resumed from a mid-epoch checkpoint (Ctrl-C, SIGTERM) sees
        the rest of that epoch's scans, and the next epochs, as an unbroken run does.
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
                    f"{len(dataset)} scans in a val/test split for {world} DDP processes: every process needs one; "
                    "use more scans (data.val_fraction / data.test_fraction) or fewer trainer.devices"
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

    def embedding_dataloader(self) -> DataLoader:
        """Every image the run will encode: each training scan's views, then the val and test scans."""
        views = StampDataset(
            self.splits["train"],
            read=self.source.read,
            augment=self.augment,
            every_view=True,
            **self._frame("train"),
            **self._stored(self.splits["train"]),
        )
        parts = [views, *(self.dataset(split, train=False) for split in ("val", "test"))]
        return self._loader(ConcatDataset(parts), shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train", train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test", train=False), shuffle=False)


def auto_workers(*, processes: int, most: int = 4) -> int:
    """``data.num_workers=auto``: this process's share of the CPUs it may use (``processes`` training processes on
    this node), at most ``most``: from a warm item store a worker prepares an item in about a millisecond, so a
    few keep any decoder step fed; more only cost start-up time and memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(most, cpus // max(1, processes)))


class StaverDataModule(StampDataModule):
    """``StampDataModule`` over the StaVer layout under ``root`` (``data=staver``): a stamp is a region of the
    region map with ink inside; ``min_region_area``: region-map components below this many px are noise."""

    def __init__(self, *, root: str | Path | None, min_region_area: int = 16, **kwargs: Any) -> None:
        if root is None or not str(root).strip():
            raise SamlitError(
                "data.root is not set: pass data.root=/path/to/staver, the folder that holds scans/scans/<id>.png, "
                "ground-truth-pixel/ground-truth-pixel/<id>-px.png and ground-truth-maps/ground-truth-maps/<id>-gt.png"
            )
        super().__init__(source=StaverSource(root=root, min_area=min_region_area), **kwargs)


class CocoDataModule(StampDataModule):
    """``StampDataModule`` over a COCO instance JSON (``data=coco``); see ``samlit.data.coco.CocoSource``."""

    def __init__(
        self,
        *,
        images: str | Path,
        annotations: str | Path | Mapping[str, str | Path],
        root: str | Path | None = None,
        categories: list[str] | None = None,
        box_source: str = "mask",
        min_region_area: int = 16,
        **kwargs: Any,
    ) -> None:
        source = CocoSource(
            images=images,
            annotations=annotations,
            root=root,
            categories=categories,
            box_source=box_source,
            min_area=min_region_area,
        )
        super().__init__(source=source, **kwargs)


class FolderDataModule(StampDataModule):
    """``StampDataModule`` over ``<root>/images`` + ``<root>/masks`` (``data=folder``); see
    ``samlit.data.folder.FolderSource``."""

    def __init__(
        self, *, root: str | Path | None, instances: str = "labels", min_region_area: int = 16, **kwargs: Any
    ) -> None:
        super().__init__(source=FolderSource(root=root, instances=instances, min_area=min_region_area), **kwargs)


class SyntheticStaverDataModule(StaverDataModule):
    """``StaverDataModule`` over generated scans: ``prepare_data`` writes them once (then reuses them)."""

    def __init__(self, *, num_scans: int = 48, image_size: int = 512, synthetic_seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_scans = num_scans
        self.image_size = image_size
        self.synthetic_seed = synthetic_seed

    def prepare_data(self) -> None:
        generate_synthetic_staver(
            root=self.root, num_scans=self.num_scans, image_size=self.image_size, seed=self.synthetic_seed
        )
        super().prepare_data()

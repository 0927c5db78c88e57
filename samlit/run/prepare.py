"""The prepare stage: every item a run reads (each training item's augmentation views, the val and test items) is
made once from its files, encoded by the frozen image encoder, and written to the store (``samlit.data.store``).
After it, training only reads: the loaders read each entry (embedding included) in their workers.

It runs as ``trainer.predict``, so Lightning supplies the device, the precision, the progress bar and, under DDP,
the sharding: each rank makes its share, then all ranks meet at a barrier and read the shared store. Every entry
of the run is read once here (SHA-256 checked): a damaged one is logged in one line and made again.

``python prepare.py [the same overrides as train.py]`` prepares without training; ``train.py`` and ``eval.py``
run it first (a warm store makes it a read of every entry).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from segment_anything.modeling import Sam
from torch.utils.data import ConcatDataset

from samlit.core.errors import SamlitError
from samlit.data.datamodule import InstanceDataModule
from samlit.data.store import DTYPES, DamagedEntry, Store
from samlit.model.fingerprint import sam_fingerprint
from samlit.model.module import SamFineTuner
from samlit.model.sam import encode_features, feature_names
from samlit.run.resident import keep_resident
from samlit.run.setup import setup

log = logging.getLogger(__name__)


@dataclass
class PrepareStats:
    """What the prepare stage did: entries the run reads, found whole, made (``encoded``: of them with an
    embedding), damaged ones rebuilt, bytes written, seconds."""

    entries: int = 0
    found: int = 0
    made: int = 0
    encoded: int = 0
    damaged: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.entries} entries: {self.found} already prepared, {self.made} made ({self.encoded} encoded, "
            f"{self.damaged} damaged rebuilt, {self.bytes_written / 2**20:.1f} MiB written) in {self.seconds:.1f} s"
        )


class Preparer(L.LightningModule):
    """``predict_step``: encode each made item's frame image (when it is stored with features: the embedding and, in
    HQ mode, the early ViT feature, ``samlit.model.sam.encode_features``) and write it."""

    def __init__(self, *, sam: Sam, store: Store, stats: PrepareStats) -> None:
        super().__init__()
        self.sam, self.store, self.stats = sam, store, stats

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        for made in batch:
            item = made["item"]
            if made["features"] is not None:
                with torch.no_grad():
                    features = encode_features(self.sam, made["image"].to(self.device))
                item.features = {k: v.detach().to("cpu", DTYPES[self.store.dtype]) for k, v in features.items()}
                self.stats.encoded += 1
            self.stats.bytes_written += self.store.write(made["key"], item, features=made["features"])
            self.stats.made += 1


def prepare(
    *,
    trainer: L.Trainer,
    module: SamFineTuner,
    datamodule: InstanceDataModule,
    splits: tuple[str, ...] = ("train", "val", "test"),
    other_frame: bool = False,
) -> PrepareStats:
    """Make every entry of ``datamodule.planned(splits=..., other_frame=...)`` that the store lacks (or holds
    damaged), then decide where the run keeps its embeddings (``cache.device``, ``samlit.run.resident``): only
    what the command reads (``eval.py``: the test split). With ``cache=none`` nothing is prepared: the loaders
    make each item from its files and the module encodes it at every step."""
    stats = PrepareStats()
    store = datamodule.store
    if store is None:
        if not module.encoder_trains:  # else setup said why the store is off
            log.info("store off (cache=none): every item is read from its files and encoded at every step")
        return stats
    if store.mode == "memory" and trainer.world_size > 1:
        raise SamlitError("cache=memory keeps one process's items only; under DDP use cache=disk (shared by ranks)")
    start = time.perf_counter()
    datamodule.features = store.features_tag(sam_fingerprint(module.sam, precision=str(trainer.precision)))
    names = feature_names(module.sam)  # an entry made for plain SAM lacks HQ mode's early feature: made again
    datamodule.feature_names = names
    plan = datamodule.planned(splits=splits, other_frame=other_frame)
    stats.entries = len(plan)
    pending: dict[tuple[str, str | None], tuple[list, list]] = {}
    seen: set[str] = set()  # an entry planned twice (the same frame in two roles) is made once
    for split, spec, key, tag in plan:
        if key in seen:
            continue
        seen.add(key)
        try:
            item = store.read(key)
            found = item is not None and (tag is None or all(name in item.features for name in names))
        except DamagedEntry as error:
            log.warning("store: %s is damaged (%s); preparing it again", store.path(key), error)
            stats.damaged, found = stats.damaged + 1, False
        if found:
            stats.found += 1
            continue
        specs, keys = pending.setdefault((split, tag), ([], []))
        specs.append(spec)
        keys.append(key)
    if pending:
        parts = [
            datamodule.prepare_dataset(split, specs, keys, features=tag)
            for (split, tag), (specs, keys) in pending.items()
        ]
        trainer.predict(
            Preparer(sam=module.sam, store=store, stats=stats),
            dataloaders=datamodule.loader(ConcatDataset(parts), shuffle=False),
            return_predictions=False,
        )
    trainer.strategy.barrier("store prepared")
    stats.seconds = time.perf_counter() - start
    where = f"{store.mode} at {store.root}" if store.mode == "disk" else store.mode
    log.info("prepared (%s, features %s): %s", where, datamodule.features, stats.line())
    keep_resident(store=store, module=module, datamodule=datamodule, trainer=trainer, splits=splits)
    return stats


def main(cfg: DictConfig) -> PrepareStats:
    """``python prepare.py``: prepare the store for the data and model ``cfg`` describes, nothing else."""
    job = setup(cfg, with_loggers=False, needs=())  # seeded as train.py: random weights must be the same weights
    return prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)

"""What every benchmark sets up the same way: synthetic scans, a SamFineTuner, a bare Trainer, timers.

Benchmarks time both sides in one process, on the same data, and print ratios: this machine is noisy.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from samlit.data.datamodule import InstanceDataModule
from samlit.data.prompts import PromptSampler
from samlit.data.staver import count_stamps
from samlit.data.synthetic import SyntheticSource
from samlit.launch.console import quiet_lightning
from samlit.model.losses import DiceLoss, SamLoss
from samlit.model.module import SamFineTuner
from samlit.model.sam import build_sam


def training_scans(
    root: Path, *, num_scans: int, image_size: int, stamps: int | None = None, **data: Any
) -> InstanceDataModule:
    """A datamodule whose train split holds exactly ``num_scans`` synthetic scans with stamps (exactly ``stamps``
    each when given; val/test empty); ``data``: other ``InstanceDataModule`` arguments (crop, store...)."""
    datamodule = InstanceDataModule(
        # some generated scans carry no stamp
        source=SyntheticSource(root=root, num_scans=num_scans * 4 + 4, image_size=image_size),
        val_fraction=0.0,
        test_fraction=0.0,
        prompts=PromptSampler(),
        **data,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    if stamps is not None:
        train = [f for f in train if count_stamps(f, min_region_area=datamodule.min_region_area) == stamps]
    if len(train) < num_scans:
        raise SystemExit(f"only {len(train)} synthetic scans with stamps; lower --scans")
    datamodule.splits = {"train": train[:num_scans], "val": [], "test": []}
    return datamodule


def make_tuner(model: str) -> SamFineTuner:
    torch.manual_seed(0)
    return SamFineTuner(
        sam=build_sam(model_type=model, weights="random"),
        loss=SamLoss(mask=DiceLoss()),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
    )


class Timer(L.Callback):
    """Wall time of every training epoch and step (seconds)."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.steps: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._epoch = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self._epoch)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self._step = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self.steps.append(time.perf_counter() - self._step)


def bare_trainer(*, max_epochs: int = 1, callbacks: list[L.Callback] = (), accelerator: str = "cpu") -> L.Trainer:
    """The default trainer's settings (gradient clipping 1.0) minus validation, logging and checkpoints."""
    quiet_lightning()
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=max_epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

"""What every benchmark sets up the same way: synthetic scans, a SamFineTuner, a bare Trainer, timers.

Benchmarks time both sides in one process, on the same data, and print ratios: this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
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


REPO = Path(__file__).resolve().parents[1]


class StepTimes(L.Callback):
    """Inside a ``train.py`` run (``+callbacks.step_times._target_=harness.StepTimes``): writes the wall time of every
    training step and every training epoch (seconds) to ``path`` as ``{"steps": [...], "epochs": [...]}`` when the
    fit ends."""

    def __init__(self, path: str) -> None:
        self.path, self.steps, self.epochs = Path(path), [], []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._epoch = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self._epoch)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self.steps.append(time.perf_counter() - self._start)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.path.write_text(json.dumps({"steps": self.steps, "epochs": self.epochs}))


def train_run(root: Path, *overrides: str) -> tuple[dict, float, list[float], list[float]]:
    """``python train.py`` rooted in ``root`` (data, store, run dir) with ``overrides``, timed by ``StepTimes``.

    Returns its metrics.json, the wall time (s), the step times and the training-epoch times (s); a failed run
    exits with its stderr's tail.
    """
    times = root / "steps.json"
    command = [sys.executable, str(REPO / "train.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    command += [*overrides, f"hydra.run.dir={root / 'run'}"]
    command += ["+callbacks.step_times._target_=harness.StepTimes", f"+callbacks.step_times.path={times}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    wall = time.perf_counter() - start
    timed = json.loads(times.read_text())
    return json.loads((root / "run" / "metrics.json").read_text()), wall, timed["steps"], timed["epochs"]


def chosen_modes(description: str, modes: Iterable[str]) -> tuple[list[str], list[str]]:
    """A mode-comparing bench's command line: ``--modes a,b`` (default: every one of ``modes``, in order; an unknown
    one is argparse's error) and the train.py overrides after it. Returns (chosen modes, overrides)."""
    modes = list(modes)
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(modes), help="which of " + ", ".join(modes))
    args, overrides = parser.parse_known_args()
    chosen = args.modes.split(",")
    if unknown := [m for m in chosen if m not in modes]:
        parser.error(f"--modes: {', '.join(unknown)} not one of {', '.join(modes)}")
    return chosen, overrides


def resident_bytes() -> int:
    """This process's resident set now, bytes (``/proc/self/statm``; Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

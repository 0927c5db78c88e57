"""Faults during training: a NaN loss stops the run by name, checkpoints survive, writes fail cleanly."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from samlit.core.errors import SamlitError
from samlit.data.store import PackedMasks, PreparedItem, Store
from samlit.model.module import NonFiniteLoss
from samlit.run.prepare import prepare
from samlit.run.setup import build_datamodule, instantiate_group
from tests.conftest import FAST, REPO
from tests.run.test_prepare import cheap_encoder


class NaNAfter(nn.Module):
    """``loss`` until ``calls`` training calls have been made, every term NaN afterwards."""

    def __init__(self, loss: nn.Module, *, calls: int) -> None:
        super().__init__()
        self.loss, self.calls, self.seen = loss, calls, 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self.loss(logits, target, iou_pred)
        if torch.is_grad_enabled():
            self.seen += 1
            if self.seen > self.calls:
                return {name: value * float("nan") for name, value in terms.items()}
        return terms


def test_nan_loss_stops_naming_step_and_batch_and_keeps_checkpoints(compose_cfg, tmp_path, monkeypatch):
    cheap_encoder(monkeypatch)
    cfg = compose_cfg(*FAST, "trainer.max_epochs=3", "~callbacks.rich_progress_bar", "~callbacks.lr_monitor")
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    steps_per_epoch = len(datamodule.dataset("train", train=True))  # batch_size 1
    module = instantiate(cfg.module)
    module.loss = NaNAfter(module.loss, calls=steps_per_epoch + 1)  # epoch 0 whole, then 1 step of epoch 1
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.callbacks), logger=False)
    prepare(trainer=trainer, module=module, datamodule=datamodule)

    with pytest.raises(NonFiniteLoss) as error:
        trainer.fit(module, datamodule=datamodule)
    message = str(error.value)
    assert f"at step {steps_per_epoch + 1} (epoch 1, batch 1: scans stampDS-" in message
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # the advice names a file that exists, written before the divergence, and a lower learning rate
    assert "nan" in message and f"ckpt_path={last} optimizer.lr=1e-05" in message and "\n" not in message
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()  # it would hold the diverged state
    kept = torch.load(last, weights_only=True)
    assert kept["epoch"] == 0 and all(torch.isfinite(v).all() for v in kept["state_dict"].values())
    # the update that the NaN would have made never happened
    assert all(torch.isfinite(p).all() for p in module.sam.mask_decoder.parameters())


def fit_setup(compose_cfg, *overrides: str):
    cfg = compose_cfg(*FAST, "~callbacks.rich_progress_bar", "~callbacks.lr_monitor", *overrides)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = instantiate(cfg.module)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.callbacks), logger=False)
    prepare(trainer=trainer, module=module, datamodule=datamodule)
    return module, trainer, datamodule


def test_nan_loss_in_the_first_epoch_says_to_start_again(compose_cfg, tmp_path, monkeypatch):
    """Diverged before any checkpoint (``optimizer.lr=1e30`` does it at step 1): no file to resume from is named,
    and none that holds the diverged weights is written."""
    cheap_encoder(monkeypatch)
    module, trainer, datamodule = fit_setup(compose_cfg, "optimizer.lr=1e30")
    with pytest.raises(NonFiniteLoss) as error:
        trainer.fit(module, datamodule=datamodule)
    message = str(error.value)
    assert "(epoch 0, batch" in message, message
    assert "no checkpoint was written before it: start a new run with optimizer.lr=1e+29" in message
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_a_resume_applies_an_overridden_learning_rate_and_refuses_another_schedule(compose_cfg, tmp_path, monkeypatch):
    """A run resumed with ``optimizer.lr=5e-3`` trains at 5e-3 (its config_resolved.yaml says so: the restored
    optimizer takes it); resumed with a scheduler it did not have, it is refused in one line."""
    cheap_encoder(monkeypatch)
    module, trainer, datamodule = fit_setup(compose_cfg, "trainer.max_epochs=1")
    trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["samlit_optimizer"]["optimizer"]["lr"] == pytest.approx(1e-4)

    seen = []

    class LearningRates(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    module, trainer, datamodule = fit_setup(compose_cfg, "trainer.max_epochs=2", "optimizer.lr=5e-3")
    trainer.callbacks.append(LearningRates())
    trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=True)
    assert seen and all(lr == pytest.approx(5e-3) for lr in seen)
    assert torch.load(last, weights_only=True)["samlit_optimizer"]["optimizer"]["lr"] == pytest.approx(5e-3)

    module, trainer, datamodule = fit_setup(compose_cfg, "trainer.max_epochs=3", "scheduler=cosine")
    with pytest.raises(SamlitError) as error:
        trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=True)
    line = str(error.value)
    assert "the checkpoint was trained with scheduler=None, this run has scheduler=" in line and "\n" not in line


def test_disk_full_while_writing_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    from samlit.core import atomic
    from samlit.core.errors import WriteError

    target = tmp_path / "metrics.json"
    target.write_text("old")

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(WriteError) as error:
        atomic.write_text(target, "new")
    assert str(target) in str(error.value) and "No space left on device" in str(error.value)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def small_item() -> PreparedItem:
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:5, 3:6] = True
    return PreparedItem(
        key="k",
        image_digest="d",
        boxes=np.array([[3, 2, 6, 5]], np.float32),
        masks=PackedMasks.pack(masks),
        low_res_targets=torch.zeros(1, 256, 256),
        original_size=(8, 8),
        input_size=(1024, 1024),
    )


def test_store_on_a_full_disk_names_the_entry_and_paths_cache_dir(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    store = Store(mode="disk", root=tmp_path / "cache")
    with pytest.raises(SamlitError) as error:
        store.write("ab12", small_item(), features=None)
    message = str(error.value)
    assert f"cannot write the store at {store.path('ab12')}" in message and "\n" not in message
    assert message.count("No space left on device") == 1 and "paths.cache_dir" in message
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no temp file left


def test_an_unreadable_store_entry_is_one_line_naming_paths_cache_dir(tmp_path):
    store = Store(mode="disk", root=tmp_path / "cache")
    store.path("ab12").mkdir(parents=True)  # a folder where the entry should be
    with pytest.raises(SamlitError) as error:
        store.read("ab12")
    message = str(error.value)
    assert f"cannot read the store at {store.path('ab12')}" in message and "paths.cache_dir" in message
    assert "\n" not in message


@pytest.mark.slow
def test_unwritable_run_dir_is_one_line_before_anything_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    command = [sys.executable, str(REPO / "train.py"), f"paths.root_dir={blocker}/sub", f"paths.cache_dir={tmp_path}/c"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write the run dir {blocker}/sub/outputs/train/runs/")
    assert f"{blocker} is a file" in line and "paths.root_dir=" in line
    sweep = subprocess.run(
        [*command[:2], "-m", *command[2:], "loss=dice,focal"], capture_output=True, text=True, cwd=tmp_path
    )
    assert sweep.returncode == 2, sweep.stderr[-2000:]
    assert sweep.stderr.startswith(f"error: cannot write the sweep dir {blocker}/sub/outputs/train/multiruns/")


@pytest.mark.slow
def test_outputs_being_a_file_is_one_line_under_the_default_config(tmp_path):
    """No ``paths.root_dir``, no ``SAMLIT_ROOT``: the run dir comes from ``${hydra:runtime.cwd}``, which the
    check used to fail to resolve (Hydra only warned, then a NotADirectoryError traceback)."""
    (tmp_path / "outputs").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != "SAMLIT_ROOT"}
    command = [sys.executable, str(REPO / "train.py"), *FAST]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write the run dir {tmp_path}/outputs/train/runs/")
    assert f"{tmp_path / 'outputs'} is a file" in line
    assert (tmp_path / "outputs").read_text() == "not a folder"

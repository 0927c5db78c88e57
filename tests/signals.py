"""A test-only callback: signal this process at a given training step (``+callbacks.signal=...``)."""

from __future__ import annotations

import os
import signal as signals

import lightning as L


class SignalAt(L.Callback):
    """Send ``signal`` (a name: SIGTERM, SIGKILL, SIGINT) to this process ``during`` the fit (once ``global_step``
    reaches ``step``, when that step's batch is done, so the fault lands mid-epoch at a known place) or the
    prepare stage (``during="cache"``: after ``step`` batches of its predict loop)."""

    def __init__(self, *, step: int, signal: str, during: str = "fit") -> None:
        assert during in ("fit", "cache"), during
        self.step = step
        self.signal = getattr(signals, signal)
        self.during = during

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.during == "fit" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx, *args):
        if self.during == "cache" and batch_idx + 1 == self.step:
            os.kill(os.getpid(), self.signal)

"""A test-only callback: signal this process at a given training step (``+callbacks.signal=...``)."""

from __future__ import annotations

import os
import signal as signals

import lightning as L


class SignalAt(L.Callback):
    """Send ``signal`` (a name: SIGTERM, SIGKILL, SIGINT) to this process once ``global_step`` reaches ``step``,
    when that step's batch is done, so the fault lands mid-epoch at a known place."""

    def __init__(self, *, step: int, signal: str) -> None:
        self.step = step
        self.signal = getattr(signals, signal)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx, *args):
        if batch_idx + 1 == self.step:  # the embedding cache build (a predict loop): after `step` batches
            os.kill(os.getpid(), self.signal)

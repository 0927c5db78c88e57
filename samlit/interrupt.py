"""``checkpoints/interrupted.ckpt``: written when a fit stops on Ctrl-C, SIGTERM or an error mid-epoch."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Lightning's ``OnExceptionCheckpoint`` (saved in ``on_exception``), kept until a fit ends normally.

    Lightning's deletes the file when any later trainer call ends; a resumed ``train.py`` runs its zero-shot
    test before the fit that reads it, so that would delete it first.
    """

    def teardown(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        pass

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)  # the fit finished: nothing left to resume

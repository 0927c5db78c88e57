"""Images and tables on the dashboards: W&B (``logger=wandb``) and TensorBoard (``logger=tensorboard``).

Scalars (loss, IoU, Dice, learning rate) reach every logger through Lightning; this module adds what scalars
cannot show: overlays of fixed val scans each val epoch (``ValOverlays``), and at the end the test overlays
and a per-scan table, zero-shot vs fine-tuned. CSV has no images: there, ``metrics.json`` holds the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import lightning as L
import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from samlit import report
from samlit.data.staver import read_scan, with_ink

TABLE_COLUMNS = ("scan", "masks", "zero_shot_iou", "fine_tuned_iou", "zero_shot_dice", "fine_tuned_dice")


def shrink(image: np.ndarray, *, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> at most ``max_side`` px on its long side (dashboards need no 3000 px scans)."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def log_images(loggers: Sequence[Logger], *, key: str, images: list[np.ndarray], captions: list[str], step: int):
    """(H, W, 3) uint8 RGB ``images`` under ``key`` on every logger that shows images."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=images, step=step, caption=captions)
        elif isinstance(logger, TensorBoardLogger):
            for image, caption in zip(images, captions, strict=True):
                logger.experiment.add_image(f"{key}/{caption}", image, global_step=step, dataformats="HWC")


def scan_table(*, zero_shot: list[dict[str, Any]], fine_tuned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per test scan, zero-shot vs fine-tuned (``SamFineTuner.test_scores`` rows of the two tests)."""
    tuned = {row["key"]: row for row in fine_tuned}
    return [
        {
            "scan": row["key"],
            "masks": row["masks"],
            "zero_shot_iou": row["iou"],
            "fine_tuned_iou": tuned[row["key"]]["iou"],
            "zero_shot_dice": row["dice"],
            "fine_tuned_dice": tuned[row["key"]]["dice"],
        }
        for row in zero_shot
        if row["key"] in tuned
    ]


def log_table(loggers: Sequence[Logger], *, key: str, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with ``TABLE_COLUMNS``) as a W&B table, and as a markdown text panel on TensorBoard."""
    data = [[row[c] for c in TABLE_COLUMNS] for row in rows]
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(TABLE_COLUMNS), data=data)
        elif isinstance(logger, TensorBoardLogger):
            lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
            lines += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |" for r in data]
            logger.experiment.add_text(key, "\n".join(lines))


def close(loggers: Sequence[Logger]) -> None:
    """Flush and close every logger; end the W&B run (a sweep's next job in this process starts a new one)."""
    for logger in loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


class ValOverlays(L.Callback):
    """Each ``every_n_epochs`` val epoch: ground truth | prediction (box prompts drawn) of the module's kept val
    scans (``module.keep_val_predictions``: the same scans every epoch) as ``val/overlays`` images.

    Args:
        every_n_epochs: log every this many val epochs.
        max_side: long side of each logged panel, px.
    """

    def __init__(self, *, every_n_epochs: int = 1, max_side: int = 384) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_side = max_side
        self._scans: dict[str, Any] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_validation_epoch_end, which gathered every rank's predictions
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.current_epoch % self.every_n_epochs:
            return
        if not any(isinstance(lg, WandbLogger | TensorBoardLogger) for lg in trainer.loggers):
            return
        images, captions = [], []
        for kept in pl_module.val_predictions:
            sample = self._scan(trainer, kept["key"])
            pred = kept["pred"].numpy()
            title = f"IoU {report.mask_iou(pred, sample.masks):.3f}"
            panels = report.comparison(sample.image, sample.masks, {title: pred}, sample.boxes)
            images.append(shrink(np.concatenate(panels, axis=1), max_side=2 * self.max_side))
            captions.append(kept["key"])
        if images:
            log_images(trainer.loggers, key="val/overlays", images=images, captions=captions, step=trainer.global_step)

    def _scan(self, trainer: L.Trainer, key: str) -> Any:
        if key not in self._scans:
            datamodule = trainer.datamodule
            (files,) = [f for f in datamodule.splits["val"] if f.key == key]
            self._scans[key] = with_ink(read_scan(files, min_region_area=datamodule.min_region_area))
        return self._scans[key]

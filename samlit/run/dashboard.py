"""Images and tables on the dashboards: W&B (``logger=wandb``) and TensorBoard (``logger=tensorboard``).

Scalars (loss, IoU, Dice, the stroke scores, learning rate) reach every logger through Lightning; this module adds
what scalars cannot show: overlays of fixed val scans each val epoch (``samlit.run.callbacks.ValOverlays``), and at
the end the test overlays and a per-scan table, zero-shot vs fine-tuned (IoU, Dice, boundary IoU at 1 px, clDice).
CSV has no images: there, ``metrics.json`` holds the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

ROW_SCORES = ("iou", "dice", "boundary_iou_1px", "cldice")  # of each TestResult row (samlit.model.metrics.scan_row)
TABLE_COLUMNS = (
    "scan",
    "masks",
    *(f"{stage}_{score}" for score in ROW_SCORES for stage in ("zero_shot", "fine_tuned")),
)


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


def image_table(*, zero_shot: list[dict[str, Any]], fine_tuned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per test scan, zero-shot vs fine-tuned (the ``TestResult.rows`` of the two tests): ``TABLE_COLUMNS``, i.e.
    the masks and, for each stage, IoU, Dice, boundary IoU at 1 px and clDice (means over the scan's masks)."""
    tuned = {row["key"]: row for row in fine_tuned}
    table = []
    for row in zero_shot:
        if row["key"] in tuned:
            scores = {
                f"{stage}_{s}": r[s]
                for s in ROW_SCORES
                for stage, r in (("zero_shot", row), ("fine_tuned", tuned[row["key"]]))
            }
            table.append({"scan": row["key"], "masks": row["masks"], **scores})
    return table


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

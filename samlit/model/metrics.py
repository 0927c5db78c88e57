"""Mask metrics: a row per image (``samlit.core.masks.mask_scores``, averaged over its masks) and the torchmetrics
collections logged per stage (averaged over masks, not pooled over pixels)."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.segmentation import DiceScore, MeanIoU

from samlit.core.masks import mask_scores


def scan_row(key: str, *, pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float | int | str]:
    """One image's row: its masks' mean IoU and Dice, ``pred`` vs ``truth`` (N, H, W) bool."""
    iou, dice = mask_scores(pred, truth)
    return {"key": key, "masks": len(truth), "iou": iou.mean().item(), "dice": dice.mean().item()}


def stage_metrics(stage: str) -> MetricCollection:
    """Per-mask IoU and Dice, averaged over masks, logged as ``<stage>/iou|dice``."""
    return MetricCollection(
        {
            "iou": MeanIoU(num_classes=1, include_background=True, input_format="one-hot"),
            "dice": DiceScore(num_classes=1, include_background=True, input_format="one-hot", average="micro"),
        },
        prefix=f"{stage}/",
    )

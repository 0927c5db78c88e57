"""Mask metrics: the one per-mask IoU / Dice (per scan rows, figure titles, the IoU head's target) and the
torchmetrics collections logged per stage (averaged over masks, not pooled over pixels)."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.segmentation import DiceScore, MeanIoU


def mask_scores(pred: torch.Tensor, truth: torch.Tensor, *, empty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask IoU and Dice of binary masks ``pred`` and ``truth`` (N, ...) bool: two (N,) float tensors.

    A mask pair with nothing in either scores ``empty`` (0 for a score, 1 where an empty prediction of an empty
    target is right).
    """
    pred, truth = pred.flatten(1), truth.flatten(1)
    inter = (pred & truth).sum(1).float()
    union = (pred | truth).sum(1).float()
    total = pred.sum(1).float() + truth.sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, empty))
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.full_like(total, empty))
    return iou, dice


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

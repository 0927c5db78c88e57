"""The one per-mask IoU / Dice of binary masks: metrics rows, figure titles, the IoU head's target and the frame
ceiling all score masks with it."""

from __future__ import annotations

import torch


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

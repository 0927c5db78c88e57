"""Mask losses on logits. Every loss takes ``logits`` and ``target`` of shape (N, H, W) (one row per mask,
``target`` in [0, 1], soft targets allowed) and returns a scalar averaged over masks, so losses are comparable
across images with different numbers of stamps. Probabilities are ``sigmoid(logits)``: never threshold before
the loss (a thresholded mask passes no gradient, the seed tutorial's bug)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from samlit.core.masks import mask_scores


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - (2|P∩T| + s) / (|P| + |T| + s)`` per mask, mean over masks."""

    def __init__(self, *, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = logits.sigmoid().flatten(1)
        target = target.flatten(1)
        inter = (prob * target).sum(1)
        dice = (2 * inter + self.smooth) / (prob.sum(1) + target.sum(1) + self.smooth)
        return (1 - dice).mean()


class FocalLoss(nn.Module):
    """Sigmoid focal loss (RetinaNet; torchvision's), mean over pixels of each mask, then over masks."""

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = sigmoid_focal_loss(logits, target, alpha=self.alpha, gamma=self.gamma, reduction="none")
        return loss.flatten(1).mean(1).mean()


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, mean over pixels, then over masks."""

    def __init__(self, *, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = torch.tensor(self.pos_weight, device=logits.device, dtype=logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight, reduction="none")
        return loss.flatten(1).mean(1).mean()


class MSELoss(nn.Module):
    """Mean squared error between ``sigmoid(logits)`` and the target (a smooth version of the seed's loss)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.sigmoid(), target, reduction="none").flatten(1).mean(1).mean()


class DiceFocalLoss(nn.Module):
    """``focal_weight * focal + dice_weight * dice``; SAM's paper trains with focal:dice = 20:1."""

    def __init__(
        self, *, dice_weight: float = 1.0, focal_weight: float = 20.0, alpha: float = 0.25, gamma: float = 2.0
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.focal_weight = focal_weight
        self.dice = DiceLoss()
        self.focal = FocalLoss(alpha=alpha, gamma=gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(logits, target) + self.focal_weight * self.focal(logits, target)


def iou_head_loss(iou_pred: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between SAM's predicted IoU (N,) and the IoU of the thresholded mask vs the target (N, H, W).

    The IoU target is computed without gradient, as in SAM's training recipe; an empty prediction of an empty
    target counts as IoU 1.
    """
    with torch.no_grad():
        actual, _ = mask_scores(logits > 0, target > 0.5, empty=1.0)
    return F.mse_loss(iou_pred, actual)


class SamLoss(nn.Module):
    """What the module minimises: ``mask(logits, target) + iou_head_weight * iou_head_loss`` (the ``loss`` group),
    returned with its named terms, as SAM 2's ``training/loss_fns.py`` and micro-sam's trainer report them.

    Args:
        mask: a mask loss above (``loss.mask``).
        iou_head_weight: weight of the MSE between SAM's IoU prediction and the mask's real IoU (0 = off).
    """

    def __init__(self, *, mask: nn.Module, iou_head_weight: float = 1.0) -> None:
        super().__init__()
        self.mask = mask
        self.iou_head_weight = iou_head_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits``, ``target`` (N, H, W); ``iou_pred`` (N,) -> scalar terms: ``loss`` (what is minimised),
        ``loss_mask`` (the mask loss) and, when ``iou_head_weight > 0``, ``loss_iou`` (the IoU head's MSE, before
        its weight). A later term joins with its own ``loss_<name>`` key."""
        mask = self.mask(logits, target)
        terms = {"loss": mask, "loss_mask": mask}
        if self.iou_head_weight > 0:
            iou = iou_head_loss(iou_pred, logits, target)
            terms["loss"], terms["loss_iou"] = mask + self.iou_head_weight * iou, iou
        return terms

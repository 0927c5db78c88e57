"""Loss values on hand-made tensors; the named terms the module minimises and logs (``SamLoss``)."""

from __future__ import annotations

import math

import pytest
import torch

from samlit.model.losses import BCELoss, DiceFocalLoss, DiceLoss, FocalLoss, MSELoss, SamLoss, iou_head_loss

BIG = 50.0  # a logit whose sigmoid is 1 (or 0) to float precision


def masks() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1  # half the first mask
    target[1, :, :1] = 1  # a quarter of the second
    return target, target * 2 * BIG - BIG  # logits that reproduce the target exactly


def test_dice_perfect_and_opposite():
    target, perfect = masks()
    assert DiceLoss(smooth=0.0)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss(smooth=0.0)(-perfect, target).item() == pytest.approx(1.0, abs=1e-6)


def test_dice_half_overlap_by_hand():
    target = torch.zeros(1, 2, 2)
    target[0, 0] = 1  # 2 px
    logits = torch.full((1, 2, 2), -BIG)
    logits[0, :, 0] = BIG  # 2 px, 1 shared
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(1 - 2 * 1 / (2 + 2), abs=1e-6)


def test_zero_logits_give_textbook_values():
    target, _ = masks()
    zero = torch.zeros_like(target)
    assert BCELoss()(zero, target).item() == pytest.approx(math.log(2), rel=1e-6)
    assert MSELoss()(zero, target).item() == pytest.approx(0.25, rel=1e-6)
    # focal at p = 0.5: alpha_t * 0.5**2 * log 2, alpha_t = 0.25 on positives, 0.75 on negatives
    pos = target.flatten(1).mean(1)
    expected = ((0.25 * pos + 0.75 * (1 - pos)) * 0.25 * math.log(2)).mean()
    assert FocalLoss()(zero, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_focal_is_the_weighted_sum():
    target, perfect = masks()
    logits = perfect * 0.01
    combo = DiceFocalLoss(dice_weight=1.0, focal_weight=20.0)(logits, target)
    assert combo.item() == pytest.approx((DiceLoss()(logits, target) + 20 * FocalLoss()(logits, target)).item())


@pytest.mark.parametrize("loss", [DiceLoss(), FocalLoss(), BCELoss(), MSELoss(), DiceFocalLoss()])
def test_gradient_flows_and_points_the_right_way(loss):
    target, _ = masks()
    logits = torch.zeros_like(target, requires_grad=True)
    loss(logits, target).backward()
    grad = logits.grad
    assert grad is not None and grad.abs().sum() > 0
    # descending the gradient raises logits on the mask and lowers them off it
    assert (grad[target == 1] < 0).all() and (grad[target == 0] >= 0).all()


def test_iou_head_loss_targets_the_real_iou():
    target = torch.zeros(1, 2, 2)
    target[0, 0] = 1
    logits = torch.full((1, 2, 2), -1.0)
    logits[0, :, 0] = 1.0  # predicted 2 px, 1 shared, union 3: IoU 1/3
    pred_iou = torch.tensor([1 / 3])
    assert iou_head_loss(pred_iou, logits, target).item() == pytest.approx(0.0, abs=1e-7)
    assert iou_head_loss(torch.tensor([1.0]), logits, target).item() == pytest.approx((2 / 3) ** 2, rel=1e-6)


def test_sam_loss_returns_its_named_terms():
    """``loss`` (what is minimised) = ``loss_mask`` + ``iou_head_weight`` * ``loss_iou``; each term a scalar."""
    target, perfect = masks()
    logits = (perfect * 0.01).requires_grad_()
    iou_pred = torch.tensor([0.2, 0.9])
    terms = SamLoss(mask=DiceLoss(), iou_head_weight=0.5)(logits, target, iou_pred)
    assert set(terms) == {"loss", "loss_mask", "loss_iou"} and all(t.ndim == 0 for t in terms.values())
    assert terms["loss_mask"].item() == pytest.approx(DiceLoss()(logits, target).item())
    assert terms["loss_iou"].item() == pytest.approx(iou_head_loss(iou_pred, logits, target).item())
    assert terms["loss"].item() == pytest.approx(terms["loss_mask"].item() + 0.5 * terms["loss_iou"].item())
    terms["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_sam_loss_without_the_iou_head_is_the_mask_loss_alone():
    target, perfect = masks()
    terms = SamLoss(mask=FocalLoss(), iou_head_weight=0.0)(perfect * 0.01, target, torch.zeros(2))
    assert set(terms) == {"loss", "loss_mask"} and torch.equal(terms["loss"], terms["loss_mask"])

"""Mask metrics: a row per image (``samlit.core.masks.mask_scores`` and two stroke scores of
``samlit.core.strokes.stroke_scores``, averaged over its masks) and the torchmetrics collections logged per stage
(averaged over masks, not pooled over pixels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.segmentation import DiceScore, MeanIoU

from samlit.core.masks import mask_scores
from samlit.core.strokes import STROKE_KEYS, stroke_scores

ROW_STROKES = ("boundary_iou_1px", "cldice")  # the stroke scores of a per-image row


def scan_row(
    key: str, *, pred: torch.Tensor, truth: torch.Tensor, strokes: dict[str, np.ndarray] | None = None
) -> dict[str, float | int | str]:
    """One image's row: its masks' mean IoU, Dice, boundary IoU at 1 px and clDice, ``pred`` vs ``truth``
    (N, H, W) bool. ``strokes``: the masks' ``stroke_scores`` when already computed (``Prediction["strokes"]``)."""
    iou, dice = mask_scores(pred, truth)
    strokes = stroke_scores(pred, truth) if strokes is None else strokes
    row = {"key": key, "masks": len(truth), "iou": iou.mean().item(), "dice": dice.mean().item()}
    return {**row, **{name: float(np.mean(strokes[name])) for name in ROW_STROKES}}


class MaskMean(Metric):
    """The mean over masks of one per-mask stroke score (``samlit.core.strokes.STROKE_KEYS``): a sum and a count,
    summed across DDP ranks.

    Args:
        key: which score of ``stroke_scores``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, *, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if key not in STROKE_KEYS:
            raise ValueError(f"key={key!r} is not one of {', '.join(STROKE_KEYS)}")
        self.key = key
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, *, strokes: dict[str, np.ndarray]) -> None:
        """Add the masks of one update: ``strokes[key]`` (N,), the ``stroke_scores`` of ``preds`` vs ``target``
        (N, 1, H, W), scored once for the whole collection (``StageMetrics``)."""
        values = torch.as_tensor(np.asarray(strokes[self.key], dtype=np.float64))
        self.total += values.sum().to(self.total)
        self.count += len(values)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)


class StageMetrics(MetricCollection):
    """A ``MetricCollection`` whose ``update(preds, target, strokes=None)`` scores the strokes of its masks once
    (``stroke_scores``) when it holds ``MaskMean`` metrics and is not given them."""

    def update(self, *args: Any, strokes: dict[str, np.ndarray] | None = None, **kwargs: Any) -> None:
        preds, target = args
        if strokes is None and any(isinstance(m, MaskMean) for m in self.values(copy_state=False)):
            strokes = stroke_scores(preds[:, 0].bool(), target[:, 0].bool())
        super().update(preds, target, strokes=strokes, **kwargs)


def stage_metrics(stage: str, *, strokes: bool | None = None) -> StageMetrics:
    """Per-mask IoU and Dice, averaged over masks, logged as ``<stage>/iou|dice``; with ``strokes`` (default: for
    ``val`` and ``test``, measured at each image's original resolution; ``train`` stays IoU / Dice in the decoder's
    frame) also the mean stroke scores ``<stage>/<key>`` for each of ``STROKE_KEYS``.
    ``update(preds, target, strokes=...)``: preds and target (N, 1, H, W) long; ``strokes`` the masks'
    ``stroke_scores``, computed when not given."""
    metrics: dict[str, Metric] = {
        "iou": MeanIoU(num_classes=1, include_background=True, input_format="one-hot"),
        "dice": DiceScore(num_classes=1, include_background=True, input_format="one-hot", average="micro"),
    }
    if stage in ("val", "test") if strokes is None else strokes:
        metrics.update({key: MaskMean(key=key) for key in STROKE_KEYS})
    # no compute groups: MaskMeans share their state names, and equal values after the first update would merge them
    return StageMetrics(metrics, prefix=f"{stage}/", compute_groups=False)

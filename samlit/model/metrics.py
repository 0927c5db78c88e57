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
from samlit.model.interactive import clicks_to_reach

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


NOC_LEVELS = (85, 90)  # NoC@85 / NoC@90: clicks to reach IoU 0.85 / 0.90


class ClickCurve(Metric):
    """The N-click evaluation over masks (``samlit.model.interactive``): the mean IoU after 0..``clicks`` clicks,
    NoC@85 and NoC@90 (the mean clicks to reach IoU 0.85 / 0.90, a mask that never does counting as ``clicks``) and
    how many masks never reached each level; sums and counts, summed across DDP ranks.

    ``compute()`` returns ``{"miou_<k>": mean IoU after k clicks, "noc<L>": ..., "not_reached_<L>": ...,
    "n_masks": ...}`` (scalar tensors), the keys logged as ``test/clicks/<key>``.

    Args:
        clicks: the most clicks per mask (C).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, *, clicks: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clicks = clicks
        self.add_state("iou_total", torch.zeros(clicks + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("noc_total", torch.zeros(len(NOC_LEVELS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("not_reached", torch.zeros(len(NOC_LEVELS), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, ious: torch.Tensor) -> None:
        """Add masks: ``ious`` (N, clicks + 1), their IoU after 0..clicks clicks."""
        ious = ious.double().cpu()
        self.iou_total += ious.sum(0).to(self.iou_total)
        for i, level in enumerate(NOC_LEVELS):
            needed, reached = clicks_to_reach(ious, level / 100)
            self.noc_total[i] += float(needed.sum())
            self.not_reached[i] += int((~reached).sum())
        self.count += len(ious)

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp(min=1)
        out = {f"miou_{k}": self.iou_total[k] / count for k in range(self.clicks + 1)}
        for i, level in enumerate(NOC_LEVELS):
            out[f"noc{level}"] = self.noc_total[i] / count
            out[f"not_reached_{level}"] = self.not_reached[i].float()
        out["n_masks"] = self.count.float()
        return out


def click_summary(logged: dict[str, Any], *, stage: str = "test") -> dict[str, Any] | None:
    """metrics.json's ``clicks`` block from the logged ``<stage>/clicks/<key>`` values (``ClickCurve``):
    ``{"miou": [m0, ..., mC], "noc85", "noc90", "not_reached_85", "not_reached_90", "max_clicks", "n_masks"}``;
    ``None`` when the stage logged no clicks."""
    prefix = f"{stage}/clicks/"
    curve = sorted((int(k[len(prefix) + 5 :]), float(v)) for k, v in logged.items() if k.startswith(prefix + "miou_"))
    if not curve:
        return None
    out: dict[str, Any] = {"miou": [v for _, v in curve]}
    for level in NOC_LEVELS:
        out[f"noc{level}"] = float(logged[f"{prefix}noc{level}"])
        out[f"not_reached_{level}"] = int(logged[f"{prefix}not_reached_{level}"])
    out["max_clicks"] = len(curve) - 1
    out["n_masks"] = int(logged[f"{prefix}n_masks"])
    return out

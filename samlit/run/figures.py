"""Pictures of a run: overlays (ground truth / predictions tinted on the scan, box prompts drawn), panels side by
side, the loss / IoU / Dice curves and mean IoU vs corrective clicks. Report, eval and dashboards draw with these."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import torch

from samlit.core import atomic
from samlit.core.batch import Prediction
from samlit.core.images import write_png
from samlit.core.masks import mask_scores
from samlit.run.report import NOC_LEVELS

GT_COLOUR = (0, 170, 0)  # RGB
PRED_COLOUR = (220, 0, 0)
BOX_COLOUR = (0, 90, 255)
MIN_SIDE = 400  # px: smaller pictures are enlarged for the figures
CURVES = ("train/loss_epoch", "val/loss", "train/iou", "val/iou", "train/dice", "val/dice")


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    colour: tuple[int, int, int],
    title: str,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Tint ``masks`` (N, H, W) bool on ``image`` (H, W, 3) uint8, draw ``boxes`` (N, 4) xyxy, write ``title``."""
    out = image.copy()
    union = masks.any(0) if len(masks) else np.zeros(image.shape[:2], bool)
    out[union] = (0.45 * out[union] + 0.55 * np.array(colour)).astype(np.uint8)
    for x0, y0, x1, y1 in np.asarray(boxes if boxes is not None else [], dtype=float).reshape(-1, 4).round():
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), BOX_COLOUR, max(1, image.shape[1] // 400))
    scale = max(image.shape[1] / 700, 0.4)
    cv2.putText(out, title, (8, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return out


def comparison(
    image: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray], boxes: np.ndarray | None = None
) -> np.ndarray:
    """Ground truth, then each of ``predictions`` ({title: (N, H, W) bool}), left to right, boxes drawn on all:
    one (H, k * W, 3) uint8 RGB picture. Small images (a stamp's crop) are enlarged by an integer factor to at
    least ``MIN_SIDE`` px, pixels kept sharp, so strokes and titles can be read."""
    factor = max(1, math.ceil(MIN_SIDE / max(image.shape[:2])))
    if factor > 1:
        image, truth = enlarge(image, factor), enlarge(truth, factor)
        predictions = {title: enlarge(masks, factor) for title, masks in predictions.items()}
        boxes = None if boxes is None else np.asarray(boxes, dtype=float) * factor
    panels = [overlay(image, truth, GT_COLOUR, "ground truth", boxes)]
    panels += [overlay(image, masks, PRED_COLOUR, title, boxes) for title, masks in predictions.items()]
    return np.concatenate(panels, axis=1)


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """(..., H, W[, 3]) -> each pixel a ``factor`` x ``factor`` block (image (H, W, 3) or masks (N, H, W))."""
    rows, cols = (-3, -2) if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8 else (-2, -1)
    return array.repeat(factor, axis=rows).repeat(factor, axis=cols)


def scan_image(prediction: Prediction) -> np.ndarray:
    """The scan of a val/test ``prediction`` at its original size (H, W, 3) uint8 RGB, from the SAM-frame image
    the step already had (no scan is read again)."""
    height, width = prediction["masks"].shape[1:]
    frame = prediction["image"].permute(1, 2, 0).numpy()
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def mean_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-mask IoU of (N, H, W) bool arrays, for figure titles (NaN without masks)."""
    if not len(truth):
        return float("nan")
    return float(mask_scores(torch.from_numpy(pred), torch.from_numpy(truth))[0].mean())


def prediction_panels(predictions: dict[str, Prediction]) -> np.ndarray:
    """Ground truth | each of ``predictions`` of one image ({name: prediction}, titled ``<name> IoU <x>``), box
    prompts drawn; the scan, ground truth and boxes are the first prediction's."""
    first = next(iter(predictions.values()))
    truth = first["masks"].numpy()
    titled = {}
    for name, predicted in predictions.items():
        pred = predicted["pred"].numpy()
        titled[f"{name} IoU {mean_iou(pred, truth):.3f}".strip()] = pred
    return comparison(scan_image(first), truth, titled, first["pixel_boxes"].numpy())


def save_comparisons(out_dir: Path, *, before: list[Prediction], after: list[Prediction]) -> dict[Path, np.ndarray]:
    """One PNG per image kept in both: ground truth | zero-shot | fine-tuned, box prompts drawn.
    Returns {path: the picture written}."""
    pictures = {}
    tuned = {p["key"]: p for p in after}
    for zero in before:
        if zero["key"] in tuned:
            picture = prediction_panels({"zero-shot": zero, "fine-tuned": tuned[zero["key"]]})
            pictures[write_png(out_dir / f"{zero['key']}.png", picture)] = picture
    return pictures


def save_curves(path: Path, epochs: list[dict[str, float]]) -> Path | None:
    """Loss and IoU/Dice per epoch (train: decoder frame, val: original resolution) as one PNG."""
    if not epochs:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (loss_axes, score_axes) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = [row["epoch"] + 1 for row in epochs]
    for axes, keys in ((loss_axes, CURVES[:2]), (score_axes, CURVES[2:])):
        for key in keys:
            values = [row.get(key, float("nan")) for row in epochs]
            axes.plot(x, values, marker="o", label=key.replace("_epoch", ""))
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    loss_axes.set_title("loss")
    score_axes.set_title("IoU / Dice")
    figure.tight_layout()
    with atomic.replacing(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return path


def save_click_curve(path: Path, *, curves: dict[str, dict | None]) -> Path | None:
    """Mean IoU over the test masks (y, 0..1) against the number of corrective clicks (x: 0 = the box alone, .. N),
    one line per stage of ``curves`` ({legend label: that stage's ``metrics.json`` ``clicks``, or ``None``}; e.g.
    ``report.click_stages(metrics)``), dotted lines at the NoC levels (IoU 0.85, 0.90), as one PNG written
    atomically. ``None``, and nothing written, when no stage has clicks."""
    curves = {label: clicks for label, clicks in curves.items() if clicks}
    if not curves:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    for label, clicks in curves.items():
        axes.plot(range(len(clicks["miou"])), clicks["miou"], marker="o", label=label)
    levels = " / ".join(f"{level / 100:.2f}" for level in NOC_LEVELS)
    for n, level in enumerate(NOC_LEVELS):  # dotted, one legend entry for all
        label = f"NoC levels: IoU {levels}" if n == 0 else None
        axes.axhline(level / 100, color="grey", linestyle=":", linewidth=1, label=label)
    lowest = min(min(clicks["miou"]) for clicks in curves.values())
    axes.set_ylim(max(0.0, min(lowest, NOC_LEVELS[0] / 100) - 0.05), 1.0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("corrective clicks (0 = box alone)")
    axes.set_ylabel("mean IoU")
    axes.set_title("mean IoU vs clicks")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic.replacing(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return path

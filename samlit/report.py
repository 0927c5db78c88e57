"""The run's report: ``metrics.json`` (zero-shot vs fine-tuned on the test split), overlays in ``figures/``,
``report.md``, and the short table printed at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import matplotlib
import numpy as np
from rich.console import Console
from rich.table import Table

from samlit import atomic

GT_COLOUR = (0, 170, 0)  # RGB
PRED_COLOUR = (220, 0, 0)


def stage_metrics(logged: dict[str, float]) -> dict[str, Any]:
    """``trainer.test`` output -> ``{"iou", "dice", "n_masks"}``."""
    return {
        "iou": float(logged["test/iou"]),
        "dice": float(logged["test/dice"]),
        "n_masks": int(logged["test/n_masks"]),
    }


def write_metrics(path: Path, *, model: str, loss: str, zero_shot: dict, fine_tuned: dict, **extra: Any) -> dict:
    """Write ``metrics.json`` atomically; returns what was written."""
    metrics = {
        "model": model,
        "loss": loss,
        "split": "test",
        "zero_shot": zero_shot,
        "fine_tuned": fine_tuned,
        **extra,
    }
    atomic.write_text(path, json.dumps(metrics, indent=2) + "\n")
    return metrics


BOX_COLOUR = (0, 90, 255)
CURVES = ("train/loss_epoch", "val/loss", "train/iou", "val/iou", "train/dice", "val/dice")


class MetricHistory(L.Callback):
    """Per-epoch values of ``CURVES`` (whatever the logger), for the report's curves."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        row = {k: float(logged[k]) for k in CURVES if k in logged}
        self.epochs.append({"epoch": trainer.current_epoch, **row})


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return path


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
) -> list[np.ndarray]:
    """Panels for ``side_by_side``: ground truth, then each of ``predictions`` ({title: (N, H, W) bool}); boxes
    drawn on all."""
    panels = [overlay(image, truth, GT_COLOUR, "ground truth", boxes)]
    return panels + [overlay(image, masks, PRED_COLOUR, title, boxes) for title, masks in predictions.items()]


def side_by_side(panels: list[np.ndarray]) -> bytes:
    """(H, W, 3) uint8 RGB panels -> one PNG, left to right."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return png.tobytes()


def read_png(path: Path) -> np.ndarray:
    """A PNG written by ``side_by_side`` -> (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-mask IoU of (N, H, W) bool arrays, for figure titles."""
    inter = (pred & gt).reshape(len(gt), -1).sum(1)
    union = (pred | gt).reshape(len(gt), -1).sum(1)
    return float(np.mean(inter / np.maximum(union, 1))) if len(gt) else float("nan")


def save_figures(
    out_dir: Path,
    *,
    images: dict[str, np.ndarray],
    zero_shot: list[dict],
    fine_tuned: list[dict],
    boxes: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """One PNG per kept test image: ground truth | zero-shot | fine-tuned, side by side, box prompts drawn."""
    paths = []
    tuned_by_key = {p["key"]: p for p in fine_tuned}
    for before in zero_shot:
        key = before["key"]
        if key not in tuned_by_key or key not in images:
            continue
        after, image, gt = tuned_by_key[key], images[key], before["masks"].numpy()
        zero, tuned = before["pred"].numpy(), after["pred"].numpy()
        prompts = (boxes or {}).get(key)
        titled = {f"zero-shot IoU {mask_iou(zero, gt):.3f}": zero, f"fine-tuned IoU {mask_iou(tuned, gt):.3f}": tuned}
        panels = comparison(image, gt, titled, prompts)
        paths.append(atomic.write_bytes(out_dir / f"{key}.png", side_by_side(panels)))
    return paths


def write_markdown(
    path: Path,
    *,
    metrics: dict,
    figures: list[Path],
    run_dir: Path,
    overrides: list[str] = (),
    curves: Path | None = None,
) -> Path:
    """``report.md``: the table, the data counts, the overrides, the curves, the overlays, the exports."""
    zs, ft = metrics["zero_shot"], metrics["fine_tuned"]
    lines = [
        f"# samlit report: {metrics['model']}, loss {metrics['loss']}",
        "",
        f"Test split: {ft['n_masks']} masks. Box prompts from the ground-truth regions; per-mask mean metrics.",
        "",
        "| | IoU | Dice |",
        "|---|---|---|",
        f"| zero-shot | {zs['iou']:.4f} | {zs['dice']:.4f} |",
        f"| fine-tuned | {ft['iou']:.4f} | {ft['dice']:.4f} |",
        "",
    ]
    if "data" in metrics:
        lines += ["## Data", "", *[f"- {k}: {v}" for k, v in metrics["data"].items()], ""]
    lines += ["## Config overrides", "", *([f"- `{o}`" for o in overrides] or ["- none (the defaults)"]), ""]
    lines += ["Full config: `config_resolved.yaml`.", ""]
    if curves is not None:
        lines += ["## Curves", "", f"![curves]({curves.relative_to(run_dir).as_posix()})", ""]
    if "export" in metrics:
        lines += ["## Export", "", f"- `{metrics['export']}` (stock SAM state_dict)"]
        if "export_decoder" in metrics:
            lines += [f"- `{metrics['export_decoder']}` (mask decoder only, for `model.decoder_weights=`)"]
        lines += [""]
    if figures:
        lines += ["## Test overlays (ground truth | zero-shot | fine-tuned; box prompts in blue)", ""]
        lines += [f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in figures]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def print_summary(metrics: dict, *, run_dir: Path) -> None:
    """The short table at the end of a run."""
    table = Table(
        title=f"{metrics['model']} / {metrics['loss']}: test split ({metrics['fine_tuned']['n_masks']} masks)"
    )
    for column in ("", "IoU", "Dice"):
        table.add_column(column)
    for name in ("zero_shot", "fine_tuned"):
        table.add_row(name.replace("_", "-"), f"{metrics[name]['iou']:.4f}", f"{metrics[name]['dice']:.4f}")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")

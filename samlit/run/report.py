"""The run's report: ``metrics.json`` (zero-shot vs fine-tuned on the test split: IoU, Dice and the stroke scores
of ``samlit.core.strokes``), ``report.md`` (linking the figures of ``samlit.run.figures``), and the short table
printed at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from samlit.core import atomic

MOSTLY_COVERED = 0.9  # report.md calls boundary IoU at 2 % mask IoU when the band covers this share of masks


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
    strokes = "boundary_iou" in zs and "boundary_iou" in ft  # metrics.json of runs before them: IoU / Dice only
    head = ["IoU", "Dice", *(["Boundary IoU 1px", "clDice"] if strokes else [])]
    rows = [("zero-shot", zs), ("fine-tuned", ft)]
    lines = [
        f"# samlit report: {metrics['model']}, loss {metrics['loss']}",
        "",
        f"Test split: {ft['n_masks']} masks. Box prompts from the ground-truth regions; per-mask mean metrics.",
        "",
        "| | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
        *(
            f"| {name} | " + " | ".join(f"{v:.4f}" for v in scores(stage, strokes=strokes)) + " |"
            for name, stage in rows
        ),
        "",
    ]
    if strokes:
        lines += stroke_lines(zs, ft)
    if metrics.get("hq"):
        lines += hq_lines(metrics["hq"])
    if "frame" in metrics:
        lines += frame_lines(metrics["frame"])
    if "data" in metrics:
        lines += ["## Data", "", *[f"- {k}: {v}" for k, v in metrics["data"].items()], ""]
    lines += ["## Config overrides", "", *([f"- `{o}`" for o in overrides] or ["- none (the defaults)"]), ""]
    lines += ["Full config: `config_resolved.yaml`.", ""]
    if curves is not None:
        lines += ["## Curves", "", f"![curves]({curves.relative_to(run_dir).as_posix()})", ""]
    if "export" in metrics:
        stock = "stock HQ-SAM state_dict: segment_anything_hq" if metrics.get("hq") else "stock SAM state_dict"
        lines += ["## Export", "", f"- `{metrics['export']}` ({stock})"]
        if "export_decoder" in metrics:
            lines += [f"- `{metrics['export_decoder']}` (mask decoder only, for `model.decoder_weights=`)"]
        lines += [""]
    if figures:
        lines += ["## Test overlays (ground truth | zero-shot | fine-tuned; box prompts in blue)", ""]
        lines += [f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in figures]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def scores(stage: dict[str, Any], *, strokes: bool) -> list[float]:
    """A stage's IoU, Dice and, with ``strokes``, boundary IoU at 1 px and clDice."""
    return [stage["iou"], stage["dice"], *([stage["boundary_iou"]["1px"], stage["cldice"]] if strokes else [])]


def stroke_lines(zero_shot: dict[str, Any], fine_tuned: dict[str, Any]) -> list[str]:
    """Boundary IoU at every width and what clDice is (markdown lines); the 2 % figure is marked as mask IoU when
    the 2 % band covers the whole ground-truth mask for most masks."""
    covered = fine_tuned["boundary_iou"].get("2%_band_covers_mask")

    def widths(stage: dict[str, Any]) -> str:
        return " / ".join(f"{stage['boundary_iou'][w]:.4f}" for w in ("1px", "2px", "3px", "2%"))

    lines = [
        "Boundary IoU (Cheng et al., CVPR 2021: the IoU of the bands along the masks' edges) at 1 / 2 / 3 px / 2% of "
        f"the item's diagonal: zero-shot {widths(zero_shot)}, fine-tuned {widths(fine_tuned)}."
    ]
    if covered is not None:
        share = f"{100 * covered:.0f} %"
        lines[0] += (
            f" The 2% entry ≈ mask IoU: the 2% band covers the whole ground-truth mask for {share} of masks (it is "
            "mask IoU exactly where it covers the prediction too)."
            if covered >= MOSTLY_COVERED
            else f" The 2% band covers the whole ground-truth mask for {share} of masks."
        )
    lines += [
        "",
        "clDice (Shit et al., CVPR 2021): how much of each mask's skeleton lies in the other mask; a broken, missing "
        "or invented stroke lowers it, a stroke one pixel off barely does (see `samlit/core/strokes.py`).",
        "",
    ]
    return lines


def hq_lines(hq: dict[str, Any]) -> list[str]:
    """HQ mode (``metrics.json`` ``hq``): the mask the model returns, what trained, what the zero-shot row is."""
    mask = {"hq": "the HQ token's", "sam+hq": "SAM's token 0 + the HQ token's (logits summed)"}[hq["mask"]]
    zero_shot = "SAM's own decoder (the HQ token started fresh)" if hq["zero_shot_mask"] == "sam" else "the same mask"
    return [
        f"HQ mode (`model.hq=true`): the mask is {mask}; trained: `{hq['train']}`; zero-shot row: {zero_shot}.",
        "",
    ]


def frame_lines(frame: dict[str, Any]) -> list[str]:
    """The frame the run saw its stamps through and the oracle ceilings of its test split (markdown lines)."""
    mode = "box crop" if frame["crop"] == "box" else "whole page"
    margin = f" (margin {frame['crop_margin']} of the box side)" if frame["crop"] == "box" else ""
    ceiling = frame.get("ceiling") or {}
    page, crop = (ceiling.get(k, {}).get("iou") for k in ("none", "box"))
    return [
        f"Frame: **{mode}**{margin}. The best IoU any decoder could reach on this test split (oracle: true masks "
        f"pooled into the decoder's 256x256 frame, upsampled as SAM does, best threshold): through the page "
        f"**{page}**, through a box crop **{crop}** (`data.crop=box`; see README, *Frame ceiling*).",
        "",
    ]


def print_summary(metrics: dict, *, run_dir: Path) -> None:
    """The short table at the end of a run (and the frame's ceiling, when known)."""
    frame = metrics.get("frame", {})
    mode = {"box": ", box crops", "none": ", whole pages"}.get(frame.get("crop"), "")
    table = Table(
        title=f"{metrics['model']} / {metrics['loss']}: test split ({metrics['fine_tuned']['n_masks']} masks{mode})"
    )
    strokes = all("boundary_iou" in metrics[name] for name in ("zero_shot", "fine_tuned"))
    for column in ("", "IoU", "Dice", *(("Boundary IoU 1px", "clDice") if strokes else ())):
        table.add_column(column)
    for name in ("zero_shot", "fine_tuned"):
        table.add_row(name.replace("_", "-"), *(f"{v:.4f}" for v in scores(metrics[name], strokes=strokes)))
    ceiling = frame.get("ceiling", {}).get(frame.get("crop"), {}).get("iou")
    if ceiling is not None:
        table.add_row("ceiling", f"{ceiling:.4f}", "", style="dim")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")

"""The run's report: ``metrics.json`` (zero-shot vs fine-tuned on the test split), ``report.md`` (linking the
figures of ``samlit.run.figures``), and the short table printed at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from samlit.core import atomic


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
    if "frame" in metrics:
        lines += frame_lines(metrics["frame"])
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
    for column in ("", "IoU", "Dice"):
        table.add_column(column)
    for name in ("zero_shot", "fine_tuned"):
        table.add_row(name.replace("_", "-"), f"{metrics[name]['iou']:.4f}", f"{metrics[name]['dice']:.4f}")
    ceiling = frame.get("ceiling", {}).get(frame.get("crop"), {}).get("iou")
    if ceiling is not None:
        table.add_row("ceiling", f"{ceiling:.4f}", "", style="dim")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")

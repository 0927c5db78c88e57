"""The run's report: ``metrics.json`` (zero-shot vs fine-tuned on the test split: IoU, Dice and the stroke scores
of ``samlit.core.strokes``; with ``clicks=N`` > 0 each stage's ``clicks``: mean IoU after 0..N corrective clicks and
NoC), ``report.md`` (linking the figures of ``samlit.run.figures``), and the short table printed at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from samlit.core import atomic

MOSTLY_COVERED = 0.9  # report.md calls boundary IoU at 2 % mask IoU when the band covers this share of masks
# IoU in percent that NoC is measured to (a stage's ``clicks`` has ``noc85``, ``noc90``): samlit.model.metrics's
# NOC_LEVELS, repeated so that the sweep summary (samlit.launch.sweep) needs no torchmetrics import
NOC_LEVELS = (85, 90)
CLICK_STEPS = (1, 3, 5)  # click counts whose mean IoU the tables show (those <= N; N itself is always shown)
CLICK_STAGES = (("zero_shot", "zero-shot"), ("fine_tuned", "fine-tuned"))  # train.py's stages: key, label
EVAL_STAGE = "prediction"  # the label of eval.py's one stage (its ``clicks`` is a top-level key of metrics.json)
CLICK_METHOD = (  # how the N-click evaluation places clicks (samlit.model.interactive.click_ious), for report.md
    "Click k goes to the centre of the largest error region of the masks after click k - 1, at the image's original "
    "resolution (the region's pixel farthest from its border): positive on a missed part (false negative), negative "
    "on a spurious part (false positive); the decoder gets the box, every earlier click and the previous pass's "
    "low-res (256x256) logits as the mask prompt. mIoU@k: mean IoU over the test masks after k clicks (@0: the box "
    "alone). NoC@85 / NoC@90: mean number of clicks until a mask's IoU reaches 0.85 / 0.90 (0 when the box alone "
    "does); a mask that never reaches it within N clicks counts as N."
)


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
    click_curve: Path | None = None,
) -> Path:
    """``report.md``: the table, the frame, the corrective clicks (when the stages have ``clicks``; ``click_curve``:
    ``figures.save_click_curve``'s PNG, linked there), the data counts, the overrides, the curves, the overlays, the
    exports."""
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
    if metrics.get("trained"):
        lines += trained_lines(metrics["trained"])
    if "frame" in metrics:
        lines += frame_lines(metrics["frame"])
    if stages := click_stages(metrics):
        curve = None if click_curve is None else click_curve.relative_to(run_dir).as_posix()
        lines += click_lines(stages, curve=curve)
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
        if "export_adapters" in metrics:
            lines += [
                f"- `{metrics['export_adapters']}` (the LoRA adapters alone, unmerged; the files above hold "
                "them merged into the weights)"
            ]
        lines += [""]
    if figures:
        lines += ["## Test overlays (ground truth | zero-shot | fine-tuned; box prompts in blue)", ""]
        lines += [f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in figures]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def trained_lines(trained: dict[str, Any]) -> list[str]:
    """What trained (``metrics.json`` ``trained``): the adapters' settings and a table of parameters per part."""
    settings = trained.get("settings")
    if settings:
        where = [
            f"{part} ({', '.join(settings[key])})"
            for part, key in (("mask decoder", "decoder_target_modules"), ("image encoder", "encoder_target_modules"))
            if settings[key]
        ]
        blocks = "all blocks" if settings["blocks"] is None else f"blocks {settings['blocks']}"
        head = (
            f"LoRA (peft={trained['peft']}): rank {settings['r']}, alpha {settings['lora_alpha']}, dropout "
            f"{settings['lora_dropout']} on the {' and the '.join(where)}"
            + (f", encoder {blocks}" if settings["encoder_target_modules"] else "")
            + f"; the mask decoder's own weights {'train' if settings['train_decoder'] else 'stay frozen'}."
        )
    else:
        head = "No adapters (peft=none): the parts below train as their parameters say."
    lines = ["## What trained", "", head, "", "| part | parameters | trainable | of them LoRA |", "|---|---|---|---|"]
    for part, counts in trained["parameters"].items():
        lines.append(f"| {part} | {counts['total']:,} | {counts['trainable']:,} | {counts['adapters']:,} |")
    return [*lines, ""]


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


def click_stages(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{label: ``clicks``} of the stages of ``metrics`` (a ``metrics.json``) that have them, in order: train.py's
    ``zero_shot`` / ``fine_tuned`` (labels ``zero-shot``, ``fine-tuned``), or eval.py's top-level ``clicks`` (label
    ``EVAL_STAGE``). Empty for ``clicks=0`` runs and for runs from before corrective clicks."""
    stages = {label: (metrics.get(key) or {}).get("clicks") for key, label in CLICK_STAGES}
    stages[EVAL_STAGE] = metrics.get("clicks")
    return {label: clicks for label, clicks in stages.items() if clicks}


def click_steps(max_clicks: int) -> list[int]:
    """The click counts a table shows for N = ``max_clicks``: 0 (the box alone), those of ``CLICK_STEPS`` up to N,
    and N."""
    steps = [0, *(k for k in CLICK_STEPS if k <= max_clicks)]
    return steps if max_clicks in steps else [*steps, max_clicks]


def miou_at(clicks: dict[str, Any], k: int) -> float | None:
    """Mean IoU over the stage's test masks after ``k`` corrective clicks (0: the box alone); ``None`` past N."""
    return clicks["miou"][k] if 0 <= k <= clicks["max_clicks"] and k < len(clicks["miou"]) else None


def noc_cell(clicks: dict[str, Any], level: int, *, words: bool = True) -> str:
    """NoC at IoU ``level`` % (mean clicks, 2 decimals) and, when some masks never reached it within N clicks, how
    many of the stage's masks: ``2.40 (3/20 not reached)`` (``words=False``: ``2.40 (3/20)``)."""
    cell = f"{clicks[f'noc{level}']:.2f}"
    missed = clicks[f"not_reached_{level}"]
    return f"{cell} ({missed}/{clicks['n_masks']}{' not reached' if words else ''})" if missed else cell


def click_lines(stages: dict[str, dict[str, Any]], *, curve: str | None = None) -> list[str]:
    """The "Corrective clicks" section of ``report.md`` (markdown lines): one row per stage of ``stages`` ({label:
    its ``clicks``}, ``click_stages``): mean IoU after 0 (the box alone), 1, 3, 5 and N clicks, NoC@85 and NoC@90
    (mean clicks; masks that never reached the level counted as N, how many said in the cell); how clicks are
    placed; ``curve``: the IoU-vs-clicks image, relative to ``report.md``."""
    steps = sorted({k for clicks in stages.values() for k in click_steps(clicks["max_clicks"])})
    head = [f"mIoU@{k}" + (" (box)" if k == 0 else "") for k in steps] + [f"NoC@{level}" for level in NOC_LEVELS]
    lines = ["## Corrective clicks", "", "| | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label, clicks in stages.items():
        ious = [miou_at(clicks, k) for k in steps]
        cells = ["" if v is None else f"{v:.4f}" for v in ious] + [noc_cell(clicks, level) for level in NOC_LEVELS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sizes = sorted({(c["max_clicks"], c["n_masks"]) for c in stages.values()})
    counts = "; ".join(f"N = {n} clicks, {m} masks" for n, m in sizes)
    lines += ["", f"{counts}. {CLICK_METHOD}", ""]
    if curve is not None:
        lines += [f"![mean IoU vs clicks]({curve})", ""]
    return lines


def click_summary(clicks: dict[str, Any]) -> str:
    """One console line of a stage's ``clicks`` (eval.py's print): mean IoU after 0 (the box alone), 1, 3, 5 and N
    clicks, then NoC@85 / NoC@90 with the masks that never reached the level."""
    ious = ", ".join(f"@{k} {miou_at(clicks, k):.4f}" for k in click_steps(clicks["max_clicks"]))
    nocs = ", ".join(f"NoC@{level} {noc_cell(clicks, level)}" for level in NOC_LEVELS)
    return f"corrective clicks (up to {clicks['max_clicks']}, {clicks['n_masks']} masks): mIoU {ious}; {nocs}"


def print_summary(metrics: dict, *, run_dir: Path) -> None:
    """The short table at the end of a run (and the frame's ceiling, when known); with corrective clicks, mean IoU
    after N clicks and NoC@85 / NoC@90 per stage (empty cells for a stage without them)."""
    frame = metrics.get("frame", {})
    mode = {"box": ", box crops", "none": ", whole pages"}.get(frame.get("crop"), "")
    table = Table(
        title=f"{metrics['model']} / {metrics['loss']}: test split ({metrics['fine_tuned']['n_masks']} masks{mode})"
    )
    strokes = all("boundary_iou" in metrics[name] for name in ("zero_shot", "fine_tuned"))
    clicked = click_stages(metrics)
    most = max((c["max_clicks"] for c in clicked.values()), default=0)
    extra = (f"IoU@{most} clicks", *(f"NoC@{level}" for level in NOC_LEVELS)) if clicked else ()
    for column in ("", "IoU", "Dice", *(("Boundary IoU 1px", "clDice") if strokes else ()), *extra):
        table.add_column(column)
    for name, label in CLICK_STAGES:
        row = [f"{v:.4f}" for v in scores(metrics[name], strokes=strokes)]
        if clicked:
            clicks = clicked.get(label)
            iou = None if clicks is None else miou_at(clicks, most)
            row += ["" if iou is None else f"{iou:.4f}"]
            row += [noc_cell(clicks, level, words=False) if clicks else "" for level in NOC_LEVELS]
        table.add_row(label, *row)
    if clicked:
        levels = " / ".join(f"{level / 100:.2f}" for level in NOC_LEVELS)
        table.caption = f"NoC: mean clicks to reach IoU {levels}; (n/M): n of M masks never did (counted as N)"
    ceiling = frame.get("ceiling", {}).get(frame.get("crop"), {}).get("iou")
    if ceiling is not None:
        table.add_row("ceiling", f"{ceiling:.4f}", "", style="dim")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")

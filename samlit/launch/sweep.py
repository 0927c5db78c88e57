"""The sweep summary: ``sweep_summary.csv`` and ``sweep_summary.md`` in a multirun dir, one row per job.

``SweepSummary`` is a Hydra callback (``hydra.callbacks`` in conf/train.yaml): it rewrites the summary after
each job (so a sweep that dies half way still has one) and once more when the multirun ends. Rows come from
each job dir's ``.hydra/overrides.yaml`` and ``metrics.json``, so it works with any launcher or sweeper
(basic, Optuna, submitit). Also ``python -m samlit.sweep <multirun dir>``.

Jobs run with ``clicks=N`` > 0 add the corrective-click scores of each stage (``metrics.json`` ``clicks``): mean IoU
after 1, 3 and 5 clicks (``<stage>_miou_at_<k>``, empty when k > N) and NoC@85 / NoC@90 (``<stage>_noc85``,
``<stage>_noc90``: mean clicks to reach IoU 0.85 / 0.90, a mask that never does counting as N), plus ``max_clicks``
(N); the markdown shows the fine-tuned ones only when some job has them. Jobs with LoRA adapters (``peft=...``) add
``peft`` (the option), ``trainable_params`` and ``adapter_params`` (of them, LoRA's), shown when some job has them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from samlit.core import atomic
from samlit.launch.resolvers import in_sweep
from samlit.run.report import CLICK_STEPS, NOC_LEVELS, miou_at

log = logging.getLogger(__name__)

CLICK_SCORES = (*(f"miou_at_{k}" for k in CLICK_STEPS), *(f"noc{level}" for level in NOC_LEVELS))  # per stage
COLUMNS = (
    "job",
    "status",
    "overrides",
    "zero_shot_iou",
    "zero_shot_dice",
    "fine_tuned_iou",
    "fine_tuned_dice",
    "fine_tuned_boundary_iou_1px",
    "fine_tuned_cldice",
    "zero_shot_boundary_iou_1px",
    "zero_shot_cldice",
    *(f"fine_tuned_{score}" for score in CLICK_SCORES),
    *(f"zero_shot_{score}" for score in CLICK_SCORES),
    "max_clicks",
    "peft",
    "trainable_params",
    "adapter_params",
    "best_val_iou",
    "wall_time_s",
    "run_dir",
)
SCORES = (  # the markdown's score columns (the CSV also has the zero-shot stroke scores)
    ("zero-shot IoU", "zero_shot_iou"),
    ("zero-shot Dice", "zero_shot_dice"),
    ("fine-tuned IoU", "fine_tuned_iou"),
    ("fine-tuned Dice", "fine_tuned_dice"),
    ("fine-tuned boundary IoU 1px", "fine_tuned_boundary_iou_1px"),
    ("fine-tuned clDice", "fine_tuned_cldice"),
    ("best val IoU", "best_val_iou"),
)
CLICK_COLUMNS = (  # the markdown's corrective-click columns, before best val IoU; shown when some row has a value
    *((f"fine-tuned mIoU@{k}", f"fine_tuned_miou_at_{k}") for k in CLICK_STEPS),
    *((f"fine-tuned NoC@{level}", f"fine_tuned_noc{level}") for level in NOC_LEVELS),
)

PEFT_COLUMNS = (  # the markdown's adapter columns, shown when some job trained adapters
    ("peft", "peft"),
    ("trainable params", "trainable_params"),
    ("of them LoRA", "adapter_params"),
)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a multirun: sub-dirs (any depth) holding Hydra's ``.hydra/overrides.yaml``."""
    found = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")]
    return sorted(found, key=lambda p: (len(p.parts), _natural(p.name)))


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (sys.maxsize, name)


def job_row(job_dir: Path, *, sweep_dir: Path) -> dict[str, Any]:
    """One job: its overrides and, when it finished, its metrics (``status`` ``ok``, else ``no metrics``)."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(job=job_dir.relative_to(sweep_dir).as_posix(), overrides=overrides, run_dir=str(job_dir))
    try:
        metrics = json.loads((job_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {**row, "status": "no metrics"}  # failed, or still running
    if not isinstance(metrics.get("fine_tuned"), dict):
        return {**row, "status": "not a train.py job"}
    for stage in ("zero_shot", "fine_tuned"):
        scores = metrics[stage]
        row[f"{stage}_iou"], row[f"{stage}_dice"] = scores["iou"], scores["dice"]
        # runs from before the stroke scores have none: left empty
        row[f"{stage}_boundary_iou_1px"] = (scores.get("boundary_iou") or {}).get("1px")
        row[f"{stage}_cldice"] = scores.get("cldice")
        if clicks := scores.get("clicks"):  # clicks=0 runs, and runs from before corrective clicks, have none
            row.update({f"{stage}_miou_at_{k}": miou_at(clicks, k) for k in CLICK_STEPS})
            row.update({f"{stage}_noc{level}": clicks[f"noc{level}"] for level in NOC_LEVELS})
            row["max_clicks"] = clicks["max_clicks"]
    if trained := metrics.get("trained"):  # runs from before adapters have none
        parts = trained["parameters"].values()
        row["peft"] = trained["peft"]
        row["trainable_params"] = sum(p["trainable"] for p in parts)
        row["adapter_params"] = sum(p["adapters"] for p in parts)
    return {
        **row,
        "status": "ok",
        "best_val_iou": metrics.get("best_val_iou"),
        "wall_time_s": metrics.get("wall_time_s"),
    }


def summarize(sweep_dir: Path | str) -> list[dict[str, Any]]:
    """Rows of every job under ``sweep_dir``, best fine-tuned IoU first (jobs without metrics last).

    ``overrides`` keeps only what differs between jobs; ``common`` (on each row) what they all share.
    """
    sweep_dir = Path(sweep_dir)
    rows = [job_row(d, sweep_dir=sweep_dir) for d in job_dirs(sweep_dir)]
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    for row in rows:
        row["common"] = [o for o in row["overrides"] if o in common]
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in common)
    return sorted(rows, key=lambda r: (r["status"] != "ok", -(r["fine_tuned_iou"] or 0.0)))


def write_summary(sweep_dir: Path | str, *, rows: list[dict[str, Any]] | None = None) -> tuple[Path, Path] | None:
    """Write ``sweep_summary.csv`` and ``.md`` atomically from ``rows`` (default: ``summarize(sweep_dir)``);
    ``None`` when no job dir exists yet. Both are written to temp files first and renamed into place only once both
    are whole (``samlit.core.atomic.replacing``), so a failure (a full disk) leaves the old pair as it was."""
    sweep_dir = Path(sweep_dir)
    rows = summarize(sweep_dir) if rows is None else rows
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, "best"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    best = rows[0] if rows[0]["status"] == "ok" else None
    for row in rows:
        writer.writerow({**row, "best": row is best})
    table = markdown(rows, best=best, sweep_dir=sweep_dir)
    csv_path, md_path = sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_summary.md"
    with atomic.replacing(csv_path) as csv_file, atomic.replacing(md_path) as md_file:
        csv_file.write(buffer.getvalue().encode("utf-8"))
        md_file.write(table.encode("utf-8"))
    return csv_path, md_path


def markdown(rows: list[dict[str, Any]], *, best: dict[str, Any] | None, sweep_dir: Path) -> str:
    """``sweep_summary.md``: the rows as a table: ``SCORES``, the ``CLICK_COLUMNS`` some row has before the last
    (best val IoU)."""
    clicks = [(title, key) for title, key in CLICK_COLUMNS if any(r.get(key) is not None for r in rows)]
    adapters = [] if all(r.get("peft") in (None, "none") for r in rows) else list(PEFT_COLUMNS)
    columns = [*SCORES[:-1], *clicks, *adapters, SCORES[-1]]

    def number(value: Any, key: str = "") -> str:
        digits = 2 if "_noc" in key else 4  # NoC: mean clicks; the rest: scores in 0..1
        if isinstance(value, int) and key.endswith("_params"):
            return f"{value:,}"
        return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    done = sum(r["status"] == "ok" for r in rows)
    lines = [
        f"# Sweep summary: {sweep_dir.name}",
        "",
        f"{done} of {len(rows)} jobs have metrics. Sorted by fine-tuned test IoU; to pick a setting without "
        "fitting the test split, compare best val IoU (what hparams_search=optuna maximises).",
    ]
    if rows[0]["common"]:
        lines += ["", "Every job: " + " ".join(f"`{o}`" for o in rows[0]["common"])]
    if clicks:
        lines += [
            "",
            "Corrective clicks (`clicks=N`): fine-tuned mean test IoU after k clicks (empty when k > N), and NoC@85 / "
            "NoC@90: the mean number of clicks until a mask's IoU reaches 0.85 / 0.90 (a mask that never does counts "
            "as N; N per job: `max_clicks` in sweep_summary.csv).",
        ]
    lines += [
        "",
        "| | job | overrides | " + " | ".join(title for title, _ in columns) + " | wall s | status |",
        "|---|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for row in rows:
        cells = [
            "**best**" if row is best else "",
            f"[{row['job']}]({row['job']})",
            f"`{row['overrides']}`" if row["overrides"] else "",
            *(number(row.get(key), key) for _, key in columns),
            "" if row["wall_time_s"] is None else f"{row['wall_time_s']:.0f}",
            row["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback: keeps ``<multirun dir>/sweep_summary.{csv,md}`` up to date (nothing in single runs)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if in_sweep():
            self._write(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        paths, rows = self._write(Path(config.hydra.sweep.dir))
        if paths:
            best = rows[0] if rows[0]["status"] == "ok" else None
            line = f"best: job {best['job']} ({best['overrides'] or 'no overrides'}) IoU {best['fine_tuned_iou']:.4f}"
            log.info("sweep summary: %s (%s)", paths[1], line if best else "no job finished")

    @staticmethod
    def _write(sweep_dir: Path) -> tuple[tuple[Path, Path] | None, list[dict[str, Any]]]:
        """Summarise and write; returns (the two paths or ``None``, the rows)."""
        try:
            rows = summarize(sweep_dir)
            return write_summary(sweep_dir, rows=rows), rows
        except OSError as error:  # a summary must never fail the sweep it summarises
            log.warning("sweep summary not written to %s: %s", sweep_dir, error)
            return None, []


def cli(argv: list[str] | None = None) -> int:
    """``python -m samlit.sweep <multirun dir>``: rebuild the summary and print its markdown."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m samlit.sweep <multirun dir>", file=sys.stderr)
        return 2
    written = write_summary(argv[0])
    if written is None:
        print(f"error: no job dirs (with .hydra/overrides.yaml) under {argv[0]}", file=sys.stderr)
        return 2
    print(Path(written[1]).read_text())
    return 0

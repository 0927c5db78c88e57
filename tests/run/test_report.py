"""report.md, the summary table and the per-image table with the stroke scores, and without them (runs from before
them); the corrective clicks (``clicks=N``) in report.md, the summary table and eval's line, and nothing of them
without."""

from __future__ import annotations

from pathlib import Path

from samlit.run import dashboard
from samlit.run.report import click_stages, click_steps, click_summary, print_summary, write_markdown


def stage(iou: float, *, covered: float | None = None) -> dict:
    out = {"iou": iou, "dice": 2 * iou / (1 + iou), "n_masks": 5}
    if covered is not None:
        widths = {"1px": iou / 4, "2px": iou / 3, "3px": iou / 2, "2%": iou, "2%_band_covers_mask": covered}
        out.update(boundary_iou=widths, cldice=iou + 0.05)
    return out


def clicks(miou: list[float], *, noc: tuple[float, float], missed: tuple[int, int], n_masks: int = 20) -> dict:
    """A stage's ``clicks`` as metrics.json has it (``len(miou) - 1`` clicks at most)."""
    return {
        "miou": miou,
        "noc85": noc[0],
        "noc90": noc[1],
        "not_reached_85": missed[0],
        "not_reached_90": missed[1],
        "max_clicks": len(miou) - 1,
        "n_masks": n_masks,
    }


def report(tmp_path, zero_shot: dict, fine_tuned: dict, *, click_curve: Path | None = None) -> str:
    metrics = {"model": "tiny", "loss": "dice", "zero_shot": zero_shot, "fine_tuned": fine_tuned}
    print_summary(metrics, run_dir=tmp_path)
    path = write_markdown(
        tmp_path / "report.md", metrics=metrics, figures=[], run_dir=tmp_path, click_curve=click_curve
    )
    return path.read_text()


def test_report_gives_boundary_iou_and_cldice(tmp_path, capsys):
    text = report(tmp_path, stage(0.2, covered=0.96), stage(0.6, covered=0.96))
    assert "| | IoU | Dice | Boundary IoU 1px | clDice |" in text
    assert "| fine-tuned | 0.6000 | 0.7500 | 0.1500 | 0.6500 |" in text
    assert "fine-tuned 0.1500 / 0.2000 / 0.3000 / 0.6000." in text  # 1 / 2 / 3 px / 2 %
    assert "The 2% entry ≈ mask IoU: the 2% band covers the whole ground-truth mask for 96 % of masks" in text
    assert "clDice" in capsys.readouterr().out
    few = report(tmp_path, stage(0.2, covered=0.3), stage(0.6, covered=0.3))
    assert "≈ mask IoU" not in few and "covers the whole ground-truth mask for 30 % of masks." in few


def test_a_run_without_stroke_scores_still_reports(tmp_path, capsys):
    text = report(tmp_path, stage(0.2), stage(0.6))
    assert "| | IoU | Dice |\n" in text and "| fine-tuned | 0.6000 | 0.7500 |" in text
    assert "Boundary" not in text and "clDice" not in capsys.readouterr().out


def test_the_per_image_table_has_boundary_iou_and_cldice():
    def row(key: str, iou: float) -> dict:
        return {"key": key, "masks": 2, "iou": iou, "dice": iou + 0.1, "boundary_iou_1px": iou / 2, "cldice": iou + 0.2}

    table = dashboard.image_table(zero_shot=[row("a", 0.1), row("b", 0.2)], fine_tuned=[row("a", 0.5)])
    assert [list(r) for r in table] == [list(dashboard.TABLE_COLUMNS)]  # b: not in both tests
    assert dashboard.TABLE_COLUMNS[:4] == ("scan", "masks", "zero_shot_iou", "fine_tuned_iou")
    assert table[0]["zero_shot_boundary_iou_1px"] == 0.05 and table[0]["fine_tuned_cldice"] == 0.7


SIX = [0.50, 0.70, 0.78, 0.84, 0.88, 0.90, 0.91]  # mean IoU after 0..6 clicks


def test_report_has_the_corrective_clicks(tmp_path, capsys, monkeypatch):
    """``clicks=6``: mIoU at 0 (box), 1, 3, 5 and 6 clicks, NoC with the masks that never reached the level, how
    clicks are placed and the curve's link; the console table gets IoU@6 and NoC columns."""
    monkeypatch.setenv("COLUMNS", "200")  # rich: one line per row
    zero = {**stage(0.5, covered=0.96), "clicks": clicks(SIX, noc=(4.6, 5.25), missed=(3, 8))}
    tuned = {
        **stage(0.8, covered=0.96),
        "clicks": clicks([0.8, 0.86, 0.9, 0.92, 0.93, 0.93, 0.94], noc=(1.1, 2.4), missed=(0, 1)),
    }
    text = report(tmp_path, zero, tuned, click_curve=tmp_path / "figures" / "clicks.png")
    section = text[text.index("## Corrective clicks") :]
    assert "| | mIoU@0 (box) | mIoU@1 | mIoU@3 | mIoU@5 | mIoU@6 | NoC@85 | NoC@90 |\n|---|" + "---|" * 7 in section
    assert (
        "| zero-shot | 0.5000 | 0.7000 | 0.8400 | 0.9000 | 0.9100 | 4.60 (3/20 not reached) | 5.25 (8/20 not reached) |"
        in section
    )
    assert "| fine-tuned | 0.8000 | 0.8600 | 0.9200 | 0.9300 | 0.9400 | 1.10 | 2.40 (1/20 not reached) |" in section
    assert "N = 6 clicks, 20 masks." in section and "centre of the largest error region" in section
    assert "counts as N" in section and "![mean IoU vs clicks](figures/clicks.png)" in section
    assert text.index("## Corrective clicks") < text.index("## Config overrides")
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "IoU@6 clicks" in line)
    assert "NoC@85" in header and "NoC@90" in header
    assert "0.9100" in next(line for line in out.splitlines() if "zero-shot" in line)
    tuned_line = next(line for line in out.splitlines() if "fine-tuned" in line)
    assert "0.9400" in tuned_line and "1.10" in tuned_line and "2.40 (1/20)" in tuned_line
    assert "n of M masks never did (counted as N)" in out


def test_few_clicks_show_what_there_is_and_only_the_stages_that_have_them(tmp_path, capsys, monkeypatch):
    """``clicks=2``: columns @0, @1, @2 (no @3, @5); a stage without clicks has no row in report.md and empty cells
    in the console table; no curve, no link."""
    monkeypatch.setenv("COLUMNS", "200")
    assert click_steps(1) == [0, 1] and click_steps(2) == [0, 1, 2] and click_steps(5) == [0, 1, 3, 5]
    assert click_steps(10) == [0, 1, 3, 5, 10]
    tuned = {**stage(0.8), "clicks": clicks([0.8, 0.88, 0.9], noc=(0.5, 1.25), missed=(0, 2), n_masks=5)}
    text = report(tmp_path, stage(0.5), tuned)
    section = text[text.index("## Corrective clicks") :]
    assert "| | mIoU@0 (box) | mIoU@1 | mIoU@2 | NoC@85 | NoC@90 |" in section
    assert "| fine-tuned | 0.8000 | 0.8800 | 0.9000 | 0.50 | 1.25 (2/5 not reached) |" in section
    assert "zero-shot" not in section and "![" not in section
    out = capsys.readouterr().out
    assert "IoU@2 clicks" in out
    zero_line = next(line for line in out.splitlines() if "zero-shot" in line)
    assert "0.5000" in zero_line and "0.9000" not in zero_line and "(" not in zero_line


def test_without_clicks_nothing_changes(tmp_path, capsys, monkeypatch):
    """``clicks=0`` (and every metrics.json from before): no section, no columns; a ``clicks`` of ``None`` too."""
    monkeypatch.setenv("COLUMNS", "200")
    before = report(tmp_path, stage(0.2), stage(0.6)), capsys.readouterr().out  # a run from before the clicks
    text = report(tmp_path, stage(0.2), {**stage(0.6), "clicks": None}, click_curve=tmp_path / "clicks.png")
    assert (text, capsys.readouterr().out) == before
    assert "Corrective clicks" not in text and "clicks.png" not in text and "NoC" not in text
    assert "IoU@" not in before[1] and "NoC" not in before[1]
    assert click_stages({"zero_shot": stage(0.2), "fine_tuned": stage(0.6)}) == {}


def test_eval_metrics_have_one_stage_of_clicks():
    """eval.py's metrics.json: the stage's keys at the top level, ``clicks`` among them."""
    one = clicks([0.6, 0.8, 0.86, 0.9], noc=(1.75, 2.5), missed=(1, 4), n_masks=8)
    metrics = {"model": "tiny", "iou": 0.6, "dice": 0.7, "n_masks": 8, "clicks": one}
    assert click_stages(metrics) == {"prediction": one}
    line = click_summary(one)
    assert line.startswith("corrective clicks (up to 3, 8 masks): mIoU @0 0.6000, @1 0.8000, @3 0.9000;")
    assert line.endswith("NoC@85 1.75 (1/8 not reached), NoC@90 2.50 (4/8 not reached)")


def test_the_report_has_the_noc_levels_the_metric_measures():
    """report.NOC_LEVELS repeats samlit.model.metrics's (the sweep summary imports the report, not torchmetrics)."""
    from samlit.model.metrics import NOC_LEVELS
    from samlit.run.report import NOC_LEVELS as REPORTED

    assert REPORTED == NOC_LEVELS

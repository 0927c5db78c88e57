"""report.md, the summary table and the per-image table with the stroke scores, and without them (runs from before
them)."""

from __future__ import annotations

from samlit.run import dashboard
from samlit.run.report import print_summary, write_markdown


def stage(iou: float, *, covered: float | None = None) -> dict:
    out = {"iou": iou, "dice": 2 * iou / (1 + iou), "n_masks": 5}
    if covered is not None:
        widths = {"1px": iou / 4, "2px": iou / 3, "3px": iou / 2, "2%": iou, "2%_band_covers_mask": covered}
        out.update(boundary_iou=widths, cldice=iou + 0.05)
    return out


def report(tmp_path, zero_shot: dict, fine_tuned: dict) -> str:
    metrics = {"model": "tiny", "loss": "dice", "zero_shot": zero_shot, "fine_tuned": fine_tuned}
    print_summary(metrics, run_dir=tmp_path)
    return write_markdown(tmp_path / "report.md", metrics=metrics, figures=[], run_dir=tmp_path).read_text()


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

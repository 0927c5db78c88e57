"""``python train.py`` end to end, as a user runs it (subprocess, real Hydra, tiny sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, REPO


def run_train(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    command += overrides
    env = {**os.environ, "WANDB_MODE": "offline"}  # never the network, whatever this machine's W&B login
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=root, env=env)


def only_run_dir(root: Path) -> Path:
    (run_dir,) = (root / "outputs" / "train" / "runs").iterdir()
    return run_dir


def run_dirs(root: Path) -> list[Path]:
    return sorted((root / "outputs" / "train" / "runs").iterdir())


def check_export_cli(run_dir: Path, out: Path) -> None:
    """``python -m samlit.export <run dir>`` rebuilds the same files from the run's best checkpoint."""
    command = [sys.executable, "-m", "samlit.export", str(run_dir), "--out", str(out)]
    refused = subprocess.run(command, capture_output=True, text=True)  # random base weights: not rebuildable
    assert refused.returncode == 2 and "--weights" in refused.stderr and "Traceback" not in refused.stderr
    full = run_dir / "export" / "sam_tiny_finetuned.pth"
    subprocess.run([*command, "--weights", str(full)], check=True, capture_output=True)
    original = torch.load(full, weights_only=True)
    rebuilt = torch.load(out / "sam_tiny_finetuned.pth", weights_only=True)
    assert rebuilt.keys() == original.keys() and all(torch.equal(rebuilt[k], original[k]) for k in original)
    rebuilt_decoder = torch.load(out / "sam_tiny_decoder.pth", weights_only=True)
    assert all(torch.equal(v, original[k]) for k, v in rebuilt_decoder.items())


def check_eval_reproduces_the_run(root: Path, run_dir: Path, metrics: dict) -> None:
    """``python eval.py`` with the run's export, on the same data and seed, gives the run's fine-tuned numbers."""
    export = run_dir / "export" / "sam_tiny_finetuned.pth"
    command = [sys.executable, str(REPO / "eval.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    clicks = [f"clicks={metrics['fine_tuned']['clicks']['max_clicks']}"] if "clicks" in metrics["fine_tuned"] else []
    result = subprocess.run(
        [*command, *FAST, f"model.weights={export}", *clicks], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (eval_dir,) = (root / "outputs" / "eval" / "runs").iterdir()
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    for key in ("iou", "dice", "cldice", "n_masks"):
        assert evaluated[key] == pytest.approx(metrics["fine_tuned"][key], abs=1e-6), key
    assert evaluated["boundary_iou"] == pytest.approx(metrics["fine_tuned"]["boundary_iou"], abs=1e-6)
    assert len(evaluated["per_image"]) == test_items(metrics)
    assert evaluated["worst_case_figures"] and (eval_dir / evaluated["worst_case_figures"][0]).is_file()
    if clicks:  # the same N-click curve as the run's fine-tuned test, its figure, and a console line
        assert evaluated["clicks"]["miou"] == pytest.approx(metrics["fine_tuned"]["clicks"]["miou"], abs=1e-6)
        assert evaluated["clicks"]["noc90"] == pytest.approx(metrics["fine_tuned"]["clicks"]["noc90"], abs=1e-6)
        assert (eval_dir / evaluated["click_curve"]).is_file() and "NoC@85" in result.stdout


NOISE = (  # issue 17: Lightning / torchmetrics messages that told a user nothing (or pointed at a real oddity)
    "was called without a model",
    'ckpt_path="last"',
    "`weights_only` was not set",
    "LeafSpec",
    "smaller than the logging interval",
    "DiceScore metric currently defaults",
    "GPU available",
    "Tip:",
    "Total estimated model params size",
    "predict returned None",  # the prepare stage is a predict loop that returns nothing, on purpose
)


def check_quiet_console(result: subprocess.CompletedProcess) -> None:
    """The console holds the story (data, prepare stage, model, results table, run dir) and none of ``NOISE``."""
    console = result.stdout + result.stderr
    assert not [n for n in NOISE if n in console], [
        line for line in console.splitlines() if any(n in line for n in NOISE)
    ]
    for needed in ("data: ", "prepared (", "parameters train", "zero-shot", "fine-tuned", "run dir: "):
        assert needed in console, needed


def test_items(metrics: dict) -> int:
    """Test items of a run: its test scans (``data.crop=none``) or its test stamps (``box``: one crop each)."""
    return metrics["data"]["test_instances" if metrics["frame"]["crop"] == "box" else "test_images"]


test_items.__test__ = False  # a helper, not a test


def check_schema(metrics: dict) -> None:
    assert metrics["split"] == "test"
    for stage in ("zero_shot", "fine_tuned"):
        assert set(metrics[stage]) >= {"iou", "dice", "boundary_iou", "cldice", "n_masks"}
        assert isinstance(metrics[stage]["n_masks"], int) and metrics[stage]["n_masks"] > 0
        assert 0.0 <= metrics[stage]["iou"] <= metrics[stage]["dice"] <= 1.0
        boundary = metrics[stage]["boundary_iou"]
        assert set(boundary) == {"1px", "2px", "3px", "2%", "2%_band_covers_mask"}
        assert all(0.0 <= v <= 1.0 for v in [*boundary.values(), metrics[stage]["cldice"]]), metrics[stage]
    assert all(set(row) >= {"zero_shot_boundary_iou_1px", "fine_tuned_cldice"} for row in metrics["per_image"])
    assert metrics["zero_shot"]["n_masks"] == metrics["fine_tuned"]["n_masks"]


def check_wandb_run(run_dir: Path, metrics: dict) -> None:
    """The offline W&B run holds the config, the val overlays of each val epoch and the per-scan test table."""
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    media = wandb_run / "files" / "media"
    val_overlays = list((media / "images" / "val").glob("overlays_*.png"))
    val_items = metrics["data"]["val_instances" if metrics["frame"]["crop"] == "box" else "val_images"]
    kept = min(2, val_items)  # callbacks.val_overlays.count=2
    assert len(val_overlays) == kept * metrics["epochs"]  # the same val scans, every val epoch
    test_overlays = list((media / "images" / "test").glob("overlays_*.png"))
    assert len(test_overlays) == min(4, test_items(metrics))  # the report's figures=4
    if "clicks" in metrics["fine_tuned"]:  # clicks=N: the IoU-vs-clicks curve
        assert len(list((media / "images" / "test").glob("click_curve_*.png"))) == 1
    (table_file,) = (media / "table" / "test").glob("per_image_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:4] == ["scan", "masks", "zero_shot_iou", "fine_tuned_iou"]
    assert {"zero_shot_boundary_iou_1px", "fine_tuned_boundary_iou_1px", "fine_tuned_cldice"} <= set(table["columns"])
    assert len(table["data"]) == test_items(metrics) == len(metrics["per_image"])
    assert list((wandb_run).glob("run-*.wandb"))  # the run's history and config (upload: wandb sync)


def check_tensorboard(run_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    assert {"val/iou", "val/dice", "train/loss_epoch", "lr-Adam"} <= set(tags["scalars"])
    assert {"val/boundary_iou_1px", "val/boundary_iou_2pct", "val/cldice", "test/cldice"} <= set(tags["scalars"])
    assert "train/cldice" not in tags["scalars"]  # train: IoU / Dice in the decoder's frame only
    assert any(t.startswith("val/overlays/") for t in tags["images"])
    assert any(t.startswith("test/overlays/") for t in tags["images"])
    assert any(t.startswith("test/per_image") for t in tags["tensors"])  # the markdown table (a text summary)
    assert {"test/clicks/miou_0", "test/clicks/miou_2", "test/clicks/noc85", "test/clicks/noc90"} <= set(
        tags["scalars"]
    )
    assert any(t.startswith("test/click_curve") for t in tags["images"])


@pytest.mark.slow
def test_train_end_to_end(tmp_path):
    """Every artefact of a run, on a few small scans (too little training to judge the numbers), logged to CSV,
    W&B (offline) and TensorBoard at once, with the 2-click evaluation (``clicks=2``)."""
    result = run_train(tmp_path, *FAST, "logger=[csv,wandb,tensorboard]", "clicks=2")
    assert result.returncode == 0, result.stderr[-3000:]
    check_quiet_console(result)
    run_dir = only_run_dir(tmp_path)
    assert "GPU available" in (run_dir / "train.log").read_text()  # Lightning's INFO lines: in the log, not the console

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["model"], metrics["loss"]) == ("tiny", "dice")
    check_schema(metrics)
    # each item's embedding was computed exactly once, by the prepare stage: none in the zero-shot test, the 2
    # epochs or the final test; the store also holds the test items in the other frame (the report's ceiling)
    data, store = metrics["data"], metrics["store"]
    unit = "instances" if metrics["frame"]["crop"] == "box" else "images"  # what each item is: a crop or a page
    num_items = data[f"train_{unit}"] + data[f"val_{unit}"] + data[f"test_{unit}"]
    assert store["mode"] == "disk" and store["encoded"] == num_items and store["encoded_in_steps"] == 0
    other_frame = data["test_images" if unit == "instances" else "test_instances"]
    assert store["made"] == store["entries"] == num_items + other_frame
    assert store["found"] == store["damaged"] == 0 and store["bytes_written"] > num_items * 256 * 64 * 64 * 2

    export = run_dir / "export" / "sam_tiny_finetuned.pth"
    state = torch.load(export, weights_only=True)
    assert "mask_decoder.iou_token.weight" in state
    decoder = torch.load(run_dir / metrics["export_decoder"], weights_only=True)
    assert set(decoder) == {k for k in state if k.startswith("mask_decoder.")}
    assert all(torch.equal(decoder[k], state[k]) for k in decoder)
    check_export_cli(run_dir, tmp_path / "re-export")
    check_eval_reproduces_the_run(tmp_path, run_dir, metrics)
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "config_resolved.yaml").is_file()
    report_md = (run_dir / "report.md").read_text()
    assert "fine-tuned" in report_md and "`debug=fast`" in report_md and "figures/curves.png" in report_md
    assert "| | IoU | Dice | Boundary IoU 1px | clDice |" in report_md and "at 1 / 2 / 3 px / 2%" in report_md
    assert (run_dir / "figures" / "curves.png").stat().st_size > 10_000
    assert "## Corrective clicks" in report_md and "figures/clicks.png" in report_md
    assert (run_dir / "figures" / "clicks.png").is_file() and "NoC@85" in result.stdout
    for stage in ("zero_shot", "fine_tuned"):
        clicks = metrics[stage]["clicks"]
        assert clicks["max_clicks"] == 2 and len(clicks["miou"]) == 3 and clicks["n_masks"] == metrics[stage]["n_masks"]
        assert clicks["miou"][0] == pytest.approx(metrics[stage]["iou"], abs=1e-5)  # 0 clicks: the box alone
        assert 0 <= clicks["noc85"] <= clicks["noc90"] <= 2 and 0 <= clicks["not_reached_90"] <= clicks["n_masks"]
    assert list((run_dir / "figures").glob("*.png"))
    assert str(run_dir) in result.stdout  # the closing table names the run dir
    check_wandb_run(run_dir, metrics)
    check_tensorboard(run_dir)

    # the synthetic scans are generated once and reused by the next run
    (data_dir,) = (tmp_path / "data").iterdir()
    marker = data_dir / "synthetic.json"
    assert marker.is_file() and metrics["data"]["root"] == str(data_dir)

    # a second run on the same scans with the same encoder makes no entry and computes no embedding at all
    result = run_train(tmp_path, *FAST, "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((run_dirs(tmp_path)[-1] / "metrics.json").read_text())["store"]
    assert (again["found"], again["made"], again["encoded"]) == (store["entries"], 0, 0)
    assert again["bytes_written"] == again["encoded_in_steps"] == 0


DEFAULT_RUN_IOU = 0.5251  # README, Quick start: `python train.py` (seed 0) on a 2-core CPU


@pytest.mark.slow
def test_default_run_learns_stamps(tmp_path):
    """Plain ``python train.py`` (the README's first command) reaches the README's fine-tuned IoU, less a margin
    for another CPU's float rounding; box crops, with the frame's ceiling above it."""
    result = run_train(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check_quiet_console(result)
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    check_schema(metrics)
    assert metrics["frame"]["crop"] == "box" and metrics["seed"] == 0
    assert metrics["fine_tuned"]["iou"] >= DEFAULT_RUN_IOU - 0.08, metrics["fine_tuned"]
    assert metrics["fine_tuned"]["iou"] > 3 * metrics["zero_shot"]["iou"], metrics
    assert metrics["fine_tuned"]["iou"] < metrics["frame"]["ceiling"]["box"]["iou"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["data=staver"], "data.root"),
        (["data=staver", "data.root=/no/such/staver"], "/no/such/staver"),
        (["model.weights=/no/such.pth"], "/no/such.pth"),
        (["model.decoder_weights=/no/such/decoder.pth"], "/no/such/decoder.pth"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, overrides, needle):
    fast = FAST if "data=staver" not in overrides else ["trainer.accelerator=cpu"]  # debug=fast sizes synthetic data
    result = run_train(tmp_path, *fast, *overrides)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_vit_b_random_runs_and_exports_for_stock_sam(tmp_path):
    """The real-model path (vit_b, random weights since none can be downloaded here) on a handful of scans."""
    result = run_train(
        tmp_path,
        "model=vit_b",
        "model.weights=random",
        "data.num_scans=6",
        "data.image_size=64",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "vit_b" and metrics["fine_tuned"]["n_masks"] > 0

    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"](checkpoint=str(run_dir / "export" / "sam_vit_b_finetuned.pth"))
    assert sum(p.numel() for p in sam.mask_decoder.parameters()) > 0

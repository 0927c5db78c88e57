"""Stop a ``train.py`` run (SIGTERM, Ctrl-C, ``kill -9``) or move its run dir, resume it, and get what an unbroken
run gets: the same metrics and decoder weights (CPU, to 1e-5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST
from tests.run.test_train import only_run_dir, run_train

# corrective clicks on: their clicks and mask-prompt choices are drawn per (seed, epoch, item, pass), so a resumed
# run draws what the unbroken one drew (pass 0 is the box-only path, so that path is covered too)
FOUR_EPOCHS = [
    *(o for o in FAST if not o.startswith("trainer.max_epochs")),
    "trainer.max_epochs=4",
    "module.corrective_clicks=2",
]
SIGNAL_AT = "+callbacks.signal._target_=tests.signals.SignalAt"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run dir of 4 epochs straight."""
    root = tmp_path_factory.mktemp("straight")
    result = run_train(root, *FOUR_EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(root)


def assert_same_result(run_dir: Path, straight: Path) -> None:
    """Same metrics and the same decoder after epoch 4 (the best checkpoint may be an earlier epoch)."""
    expected = json.loads((straight / "metrics.json").read_text())
    finished = json.loads((run_dir / "metrics.json").read_text())
    assert finished["epochs"] == expected["epochs"] == 4
    for stage in ("zero_shot", "fine_tuned"):
        for key in ("iou", "dice"):
            assert finished[stage][key] == pytest.approx(expected[stage][key], abs=1e-5), (stage, key)
    assert finished["best_val_iou"] == pytest.approx(expected["best_val_iou"], abs=1e-5)
    ends = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (straight, run_dir)]
    assert ends[0]["epoch"] == ends[1]["epoch"] == 3
    for key, value in ends[0]["state_dict"].items():
        assert torch.allclose(ends[1]["state_dict"][key], value, atol=1e-5), key


def stop_at(root: Path, step: int, signal: str, *overrides: str):
    at = [SIGNAL_AT, f"+callbacks.signal.step={step}", f"+callbacks.signal.signal={signal}"]
    return run_train(root, *FOUR_EPOCHS, *overrides, *at)


def check_stopped(result, run_dir: Path, *, by: str) -> Path:
    """A run stopped at step 9 by ``by``: exit 2, one error line naming ``interrupted.ckpt`` (written at step 9)."""
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: stopped by {by} at step 9") and f"ckpt_path={interrupted}" in line
    assert torch.load(interrupted, weights_only=True)["global_step"] == 9
    return interrupted


@pytest.mark.slow
def test_sigterm_and_kill_9_then_resume_give_the_same_result_as_an_unbroken_run(tmp_path, straight):
    """SIGTERM mid-epoch 1 (step 9: ``interrupted.ckpt``), resumed from it, ``kill -9`` mid-epoch 2 (step 15:
    nothing written, ``last.ckpt`` is epoch 1's), resumed from that. Same run dir throughout."""
    stopped = stop_at(tmp_path, 9, "SIGTERM")
    run_dir = only_run_dir(tmp_path)
    interrupted = check_stopped(stopped, run_dir, by="SIGTERM")

    same_dir = f"hydra.run.dir={run_dir}"
    killed = stop_at(tmp_path, 15, "SIGKILL", f"ckpt_path={interrupted}", same_dir)
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the last whole epoch before the kill
    resumed = run_train(tmp_path, *FOUR_EPOCHS, f"ckpt_path={last}", same_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(run_dir, straight)


@pytest.mark.slow
def test_ctrl_c_then_resume_gives_the_same_result_as_an_unbroken_run(tmp_path, straight):
    """Ctrl-C (SIGINT) mid-epoch stops between steps as SIGTERM does; before the fix the resumed run skipped a
    batch (71 steps instead of 72) and ended with other weights."""
    stopped = stop_at(tmp_path, 9, "SIGINT")
    run_dir = only_run_dir(tmp_path)
    interrupted = check_stopped(stopped, run_dir, by="Ctrl-C")
    assert "Traceback" not in stopped.stderr
    resumed = run_train(tmp_path, *FOUR_EPOCHS, f"ckpt_path={interrupted}", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ends = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (straight, run_dir)]
    assert ends[0]["global_step"] == ends[1]["global_step"]  # no batch skipped
    assert_same_result(run_dir, straight)


@pytest.mark.slow
def test_resume_in_a_moved_run_dir_tests_its_best_checkpoint(tmp_path, straight):
    """The run dir is moved, then resumed from its ``last.ckpt`` (the fit is already done): the fine-tuned test
    loads the best checkpoint from the new place (it used to load the old path and fail: no metrics, no export)."""
    moved = Path(shutil.copytree(straight, tmp_path / "moved"))
    expected = json.loads((straight / "metrics.json").read_text())
    for name in ("metrics.json", "report.md"):
        (moved / name).unlink()
    resumed = run_train(tmp_path, *FOUR_EPOCHS, f"ckpt_path={moved}/checkpoints/last.ckpt", f"hydra.run.dir={moved}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((moved / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]).parent == moved / "checkpoints"
    assert Path(metrics["best_checkpoint"]).name == Path(expected["best_checkpoint"]).name
    for key in ("iou", "dice"):
        assert metrics["fine_tuned"][key] == pytest.approx(expected["fine_tuned"][key], abs=1e-6), key
    assert (moved / "export" / "sam_tiny_finetuned.pth").is_file()

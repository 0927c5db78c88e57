"""A run dir: it belongs to one run (issue 16: no output overwrites another output), and what a run leaves in
it is found in one place (``samlit.run.rundir``)."""

from __future__ import annotations

import json

import pytest

from samlit.core.errors import SamlitError
from samlit.run import rundir
from samlit.run.rundir import claim_run_dir


def test_a_fresh_dir_is_claimed(tmp_path):
    claim_run_dir(tmp_path, marker="config_resolved.yaml")  # nothing there: no error


def test_another_runs_dir_is_refused_naming_the_fix(tmp_path):
    (tmp_path / "config_resolved.yaml").write_text("x")
    with pytest.raises(SamlitError) as error:
        claim_run_dir(tmp_path, marker="config_resolved.yaml", resume=str(tmp_path.parent / "other" / "last.ckpt"))
    message = str(error.value)
    assert f"hydra.run.dir={tmp_path} already holds another run" in message
    assert f"ckpt_path={tmp_path}/checkpoints/last.ckpt" in message
    assert (tmp_path / "config_resolved.yaml").read_text() == "x"


def test_resuming_the_dirs_own_checkpoint_carries_it_on(tmp_path):
    (tmp_path / "config_resolved.yaml").write_text("x")
    claim_run_dir(tmp_path, marker="config_resolved.yaml", resume=str(tmp_path / "checkpoints" / "last.ckpt"))


def run_dir_with(tmp_path, *, config: str | None = "data:\n  crop: box\n  crop_margin: 0.3\n"):
    """A train.py run dir as ``samlit.run.rundir`` describes it: config, an export, two checkpoints."""
    run = tmp_path / "run"
    for folder in (rundir.EXPORT, rundir.CHECKPOINTS):
        (run / folder).mkdir(parents=True)
    (rundir.export_dir(run) / "sam_tiny_finetuned.pth").write_bytes(b"x")
    for name in ("last.ckpt", "epoch=1.ckpt"):
        (run / rundir.CHECKPOINTS / name).write_bytes(b"x")
    if config is not None:
        rundir.config_path(run).write_text(config)
    return run


def test_a_runs_files_lead_back_to_it(tmp_path):
    run = run_dir_with(tmp_path)
    assert rundir.config_path(run) == run / "config_resolved.yaml" and rundir.export_dir(run) == run / "export"
    assert rundir.run_of(run / "export" / "sam_tiny_finetuned.pth") == run
    assert rundir.run_of(run / "checkpoints" / "last.ckpt") == run


def test_run_frame_reads_the_frame_of_the_run_that_wrote_the_weights(tmp_path):
    run = run_dir_with(tmp_path)
    frame = {"crop": "box", "crop_margin": 0.3}
    assert rundir.run_frame(None, str(run / "export" / "sam_tiny_finetuned.pth")) == frame
    assert rundir.run_frame(str(run / "checkpoints" / "last.ckpt"), "official") == frame  # the first that is a run's
    assert rundir.run_frame("official", "random", None) is None
    assert rundir.run_frame(str(tmp_path / "missing.pth")) is None


def test_a_run_config_without_a_frame_gives_the_defaults(tmp_path):
    run = run_dir_with(tmp_path, config="model:\n  model_type: tiny\n")
    assert rundir.run_frame(str(run / "export" / "sam_tiny_finetuned.pth")) == {"crop": "none", "crop_margin": 0.1}
    assert rundir.run_frame(str(run_dir_with(tmp_path / "bare", config=None) / "checkpoints" / "last.ckpt")) is None


def test_run_checkpoint_finds_the_best_then_the_last_checkpoint(tmp_path):
    run = run_dir_with(tmp_path)
    best = run / "checkpoints" / "epoch=1.ckpt"
    assert rundir.run_checkpoint(best) == (best, run)  # a .ckpt given: itself
    assert rundir.run_checkpoint(run) == (run / "checkpoints" / "last.ckpt", run)  # no metrics.json yet
    (run / rundir.METRICS).write_text(json.dumps({"best_checkpoint": str(best)}))
    assert rundir.run_checkpoint(run) == (best, run)
    with pytest.raises(SamlitError, match=r"holds no checkpoint \(checkpoints/\*\.ckpt\); pass a run dir"):
        rundir.run_checkpoint(tmp_path / "empty")


def test_writable_problem_names_what_blocks_the_dir(tmp_path):
    assert rundir.writable_problem(tmp_path / "new" / "run") is None and (tmp_path / "new" / "run").is_dir()
    (tmp_path / "file").write_text("x")
    assert rundir.writable_problem(tmp_path / "file" / "run") == f"{tmp_path / 'file'} is a file"


def test_the_hydra_callback_stays_in_launch(tmp_path, capsys):
    """conf/train.yaml names ``samlit.launch.rundir.RunDirCheck``; it uses the check of ``samlit.run.rundir``."""
    from samlit.launch.rundir import require_writable

    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        require_writable(tmp_path / "file" / "run", what="run dir", key="run")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.startswith(f"error: cannot write the run dir {tmp_path}/file/run: ")
    assert "hydra.run.dir=<dir>" in line

"""A run dir belongs to one run (issue 16: no output overwrites another output)."""

from __future__ import annotations

import pytest

from samlit.core.errors import SamlitError
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

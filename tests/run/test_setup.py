"""``setup(cfg)`` checks every value that would otherwise fail late or pass silently, before any big work:
one ``SamlitError`` line that names the key."""

from __future__ import annotations

import pytest
import torch

from samlit.core.errors import SamlitError, find_user_error
from samlit.run.setup import setup
from tests.conftest import FAST


@pytest.mark.parametrize(
    "override,key",
    [
        ("data.test_fraction=0", "data.test_fraction"),
        ("data.num_scans=1", "holds an instance with ink: 1 images read"),  # seed 0 draws one scan without a stamp
        ("data.num_scans=2", "_fraction"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.augment.views=-1", "data.augment.views"),
        ("data.prompts.box_jitter=5", "data.prompts.box_jitter"),
        ("data.prompts.points_probability=2", "data.prompts.points_probability"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("optimizer.lr=abc", "optimizer.lr"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay"),
        ("seed=-1", "seed"),
        ("seed=1.5", "seed"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(compose_cfg, override, key):
    """What the entry point prints: the SamlitError behind Hydra's instantiation error, if any."""
    with pytest.raises(Exception) as error:
        setup(compose_cfg(*FAST, override), with_loggers=False)
    user_error = find_user_error(error.value)
    assert isinstance(user_error, SamlitError), repr(error.value)
    assert key in str(user_error) and "\n" not in str(user_error), str(user_error)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_without_a_gpu_is_one_line(compose_cfg):
    with pytest.raises(SamlitError, match=r"trainer.accelerator=gpu .* no CUDA GPU .* trainer=cpu"):
        setup(compose_cfg("trainer=gpu"), with_loggers=False)


def test_resume_checkpoint_is_checked_before_anything_runs(tmp_path):
    """``ckpt_path=`` missing, empty, truncated, or an export: one line, before the cache build and zero-shot test."""
    from samlit.run.train import check_resume_checkpoint

    empty, truncated, export = tmp_path / "empty.ckpt", tmp_path / "truncated.ckpt", tmp_path / "sam_tiny.pth"
    empty.write_bytes(b"")
    torch.save({"state_dict": {"w": torch.zeros(100)}, "loops": {}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    torch.save({"mask_decoder.w": torch.zeros(2)}, export)
    for path, words in (
        (tmp_path / "missing.ckpt", "does not exist"),
        (empty, "is empty"),
        (truncated, "not a readable weights-only checkpoint"),
        (export, "not a Lightning checkpoint"),
    ):
        with pytest.raises(SamlitError, match=words) as error:
            check_resume_checkpoint(str(path))
        assert str(path) in str(error.value) and "last.ckpt" in str(error.value) and "\n" not in str(error.value)
    good = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "loops": {}, "epoch": 1}, good)
    check_resume_checkpoint(str(good))
    check_resume_checkpoint(None)

"""``setup(cfg)`` checks every value that would otherwise fail late or pass silently, before any big work:
one ``SamlitError`` line that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samlit.core.errors import SamlitError, find_user_error
from samlit.data.coco import CocoSource
from samlit.data.folder import FolderSource
from samlit.data.staver import StaverSource
from samlit.data.store import Store
from samlit.data.synthetic import SyntheticSource
from samlit.run.setup import build_datamodule, setup
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
        ("cache.mode=ram", "cache.mode"),
        ("cache.dtype=int8", "cache.dtype"),
        ("cache.device=gpu", "cache.device"),
        ("cache.root=null", "cache.root"),
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cache_device_cuda_without_a_gpu_is_one_line_before_the_data_is_read(compose_cfg, tmp_path):
    with pytest.raises(SamlitError, match=r"cache.device=cuda .* not run on a CUDA GPU; use cache.device=auto\|cpu"):
        setup(compose_cfg(*FAST, "cache.device=cuda"), with_loggers=False)
    assert not (tmp_path / "data").exists()  # refused before the synthetic scans were generated


def test_resume_checkpoint_is_checked_before_anything_runs(tmp_path):
    """``ckpt_path=`` missing, empty, truncated, or an export: one line, before the prepare stage and the
    zero-shot test."""
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


@pytest.mark.parametrize(
    "overrides,source,expected",
    [
        ([*FAST, "data.num_scans=7"], SyntheticSource, {"num_scans": 7, "image_size": 128}),
        (["data=staver", "data.root=/d/staver"], StaverSource, {"root": Path("/d/staver")}),
        (["data=folder", "data.root=/d/own", "data.instances=components"], FolderSource, {"instances": "components"}),
        (
            ["data=coco", "data.images=/d/img", "data.annotations=/d/a.json"],
            CocoSource,
            {"images": Path("/d/img"), "annotations": {None: Path("/d/a.json")}},
        ),
    ],
)
def test_build_datamodule_hands_the_shortcuts_to_the_source_and_the_cache_group_to_the_store(
    compose_cfg, tmp_path, overrides, source, expected
):
    """``data.root=...`` & co. (the README's commands) reach the ``data.source`` node; the ``cache`` group is the
    datamodule's store (``<paths.cache_dir>/store``)."""
    datamodule = build_datamodule(compose_cfg(*overrides, "data.min_region_area=9").data)  # debug=fast: synthetic
    assert type(datamodule.source) is source and datamodule.source.min_area == datamodule.min_region_area == 9
    assert {key: getattr(datamodule.source, key) for key in expected} == expected
    store = datamodule.store
    assert isinstance(store, Store) and (store.mode, store.root) == ("disk", tmp_path / "cache" / "store")


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_cache_none_has_no_store_and_memory_a_folder_of_its_own(compose_cfg, tmp_path, cache):
    datamodule = build_datamodule(compose_cfg(*FAST, f"cache={cache}").data)
    if cache == "none":
        assert datamodule.store is None
    else:
        assert datamodule.store.mode == "memory" and datamodule.store.root.is_dir()
        assert tmp_path not in datamodule.store.root.parents

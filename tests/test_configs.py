"""Every option of every config group composes and instantiates what it names."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF

GROUPS = ["model", "data", "cache", "loss", "optimizer", "trainer", "logger", "callbacks", "paths"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(compose_cfg, group, option):
    extra = ["data.root=/somewhere"] if (group, option) == ("data", "staver") else []
    cfg = compose_cfg(f"{group}={option}", *extra)
    groups = [k for k in cfg if k != "hydra" and OmegaConf.is_config(cfg[k])]
    resolved = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in groups}  # every interpolation resolves
    assert resolved[group] is not None
    assert cfg.seed == 0


def test_readme_real_data_command_composes(compose_cfg):
    cfg = compose_cfg("model=vit_b", "loss=dice", "data=staver", "data.root=/data/staver")
    assert cfg.model.model_type == "vit_b"
    assert cfg.module.loss._target_ == "samlit.losses.DiceLoss"
    assert cfg.data._target_.endswith("StaverDataModule")


def test_defaults_are_the_offline_path(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.model.model_type, cfg.model.weights) == ("tiny", "random")
    assert cfg.data._target_.endswith("SyntheticStaverDataModule")
    assert cfg.optimizer.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("loss", options("loss"))
def test_losses_and_optimizers_instantiate(compose_cfg, loss):
    cfg = compose_cfg(f"loss={loss}")
    assert callable(instantiate(cfg.loss))
    assert callable(instantiate(cfg.optimizer))


@pytest.mark.parametrize("mode", options("cache"))
def test_cache_options_instantiate_into_the_module(compose_cfg, tmp_path, mode):
    cfg = compose_cfg(f"cache={mode}")
    module = instantiate(cfg.module)
    assert module.embeddings.mode == mode
    if mode == "disk":  # under paths.cache_dir, outside the run dir
        assert module.embeddings.root == tmp_path / "cache" / "embeddings"


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    """Outside the run dir so runs and sweep jobs share it; $SAMLIT_CACHE moves it."""

    def cache_root() -> str:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=["paths.root_dir=/r"]).cache.root

    monkeypatch.delenv("SAMLIT_CACHE", raising=False)
    assert cache_root() == "~/.cache/samlit/embeddings"
    monkeypatch.setenv("SAMLIT_CACHE", "/big/disk/samlit")
    assert cache_root() == "/big/disk/samlit/embeddings"
    GlobalHydra.instance().clear()


def test_seed_zero_reaches_the_data_split(compose_cfg):
    assert compose_cfg().data.seed == 0
    assert compose_cfg("seed=7").data.seed == 7


def test_logger_can_be_turned_off(compose_cfg):
    from samlit.config import instantiate_group

    assert instantiate_group(compose_cfg("~logger").get("logger")) == []
    (csv_logger,) = instantiate_group(compose_cfg().logger)
    assert type(csv_logger).__name__ == "CSVLogger"

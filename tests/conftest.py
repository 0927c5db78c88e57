"""Tests compose the real Hydra configs (a broken config fails a test) with tiny sizes, on CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import samlit.launch.resolvers  # noqa: F401  (registers the configs' ${samlit.*:} resolvers, as the entry points do)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Small but real: the tiny SAM, a few 128 px synthetic scans, two epochs (conf/debug/fast.yaml).
FAST = ["debug=fast"]


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<name>.yaml`` with overrides, rooted in ``tmp_path`` (data, outputs, cache, run dir)."""

    def _compose(*overrides: str, name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            rooted = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", *overrides]
            cfg = compose(name, overrides=rooted, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()

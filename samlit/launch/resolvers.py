"""OmegaConf resolvers the configs use, registered on import (``samlit.launch.entry`` imports this module, so
every entry point has them before Hydra resolves a config).

- ``${samlit.sweep_name:}``: the multirun dir's name in a sweep job (W&B ``group``), else ``null``.
- ``${samlit.run_name:}``: the job's overrides (``loss=focal,optimizer.lr=0.001``), else the run dir's name.
- ``${samlit.wandb_offline:}``: ``false`` when W&B can reach an account (``WANDB_API_KEY``, a ``wandb login``
  netrc entry) or ``WANDB_MODE`` is set (W&B then follows it); ``true`` otherwise: runs are written to disk
  and ``wandb sync <run dir>/wandb/offline-run-*`` uploads them later.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf


def in_sweep() -> bool:
    """True inside a job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_name() -> str | None:
    if not in_sweep():
        return None
    return Path(HydraConfig.get().sweep.dir).name


def run_name() -> str | None:
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.job.override_dirname or OmegaConf.is_missing(hydra.runtime, "output_dir"):
        return hydra.job.override_dirname or None
    return Path(hydra.runtime.output_dir).name


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_offline() -> bool:
    return not (os.environ.get("WANDB_MODE") or wandb_has_key())


for _name, _resolver in {
    "samlit.sweep_name": sweep_name,
    "samlit.run_name": run_name,
    "samlit.wandb_offline": wandb_offline,
}.items():
    OmegaConf.register_new_resolver(_name, _resolver, replace=True)

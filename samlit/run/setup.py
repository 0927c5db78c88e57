"""From a composed config to the objects of a job: ``setup(cfg)`` builds the datamodule, the module, the
loggers and the trainer (with its callbacks) the same way for train, eval and prepare."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from samlit.core.errors import SamlitError
from samlit.data.datamodule import InstanceDataModule
from samlit.model.module import SamFineTuner
from samlit.run.callbacks import MetricHistory
from samlit.run.testing import TestPredictions

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What a job runs on."""

    datamodule: InstanceDataModule
    module: SamFineTuner
    trainer: L.Trainer
    loggers: list[Logger]
    history: MetricHistory


def setup(
    cfg: DictConfig,
    *,
    with_loggers: bool = True,
    keep: int = 4,
    order: str = "first",
    needs: tuple[str, ...] = ("val", "test"),
) -> Job:
    """Seed, then build (in this order, so random weights are the same in every entry point) the datamodule
    (data prepared and split), the module, the loggers (``cfg.logger`` unless ``with_loggers`` is false) and
    the trainer with ``cfg.callbacks`` plus a ``MetricHistory`` and a ``TestPredictions(keep, order)``.
    Every value that would otherwise fail late (or pass silently) is checked first, in one line, and the splits
    in ``needs`` must hold a scan."""
    check_values(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # generate synthetic scans / validate the layout before building anything big
    datamodule.setup("fit")
    datamodule.require_splits(*needs)
    log.info("data: %s", datamodule.summary())
    module = instantiate(cfg.module)
    if module.encoder_trains and datamodule.store is not None:
        log.info(
            "embedding cache off: peft adapts the image encoder (peft.encoder_target_modules), whose output changes "
            "at every step, so items are made from their files and encoded at every step (cache=%s is not used)",
            datamodule.store.mode,
        )
        datamodule.store = None
    history = MetricHistory(also=(cfg.optimized_metric,) if cfg.get("optimized_metric") else ())
    loggers = instantiate_group(cfg.get("logger")) if with_loggers else []
    callbacks = [*instantiate_group(cfg.get("callbacks")), history, TestPredictions(keep=keep, order=order)]
    if not loggers:  # logger=null / ~logger: Lightning refuses a learning-rate monitor with nowhere to log
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **epoch_fit(cfg, datamodule))
    return Job(datamodule=datamodule, module=module, trainer=trainer, loggers=loggers, history=history)


SHORTCUT = re.compile(r"\$\{data\.(\w+)\}")


def build_datamodule(data: DictConfig) -> InstanceDataModule:
    """Instantiate the ``data`` node: the datamodule with its ``source`` node. A top-level key that the source
    node reads whole (``root: ${data.root}``) is a command-line shortcut (``data.root=...``, as every README command
    types it): it reaches the source through that interpolation and is not passed to the datamodule."""
    source = OmegaConf.to_container(data.source, resolve=False)
    shortcuts = {m.group(1) for v in source.values() if isinstance(v, str) and (m := SHORTCUT.fullmatch(v.strip()))}
    node = OmegaConf.to_container(data, resolve=True)
    return instantiate({k: v for k, v in node.items() if k not in shortcuts})


def epoch_fit(cfg: DictConfig, datamodule: Any) -> dict[str, int]:
    """``log_every_n_steps`` no longer than a training epoch (one process's share), so every epoch logs its
    training loss (Lightning warns on every short run otherwise)."""
    interval = cfg.trainer.get("log_every_n_steps")
    if not interval or not datamodule.splits.get("train"):
        return {}
    batches = math.ceil(len(datamodule.dataset("train", train=True)) / datamodule.batch_size)
    return {"log_every_n_steps": max(1, min(int(interval), batches))}


def check_values(cfg: DictConfig) -> None:
    """``seed``, ``optimizer.lr``, ``optimizer.weight_decay``, a GPU trainer without a GPU and ``cache.device=cuda``
    without one: one line each, before any data or model is built."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise SamlitError(f"seed={seed!r} must be a whole number in [0, 2**32)")
    for key, least in (("lr", 0.0), ("weight_decay", 0.0)):
        value = cfg.optimizer.get(key, 0.0 if key == "weight_decay" else None)
        good = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not good or value < least or (key == "lr" and value == 0):
            relation = "> 0" if key == "lr" else ">= 0"
            raise SamlitError(f"optimizer.{key}={value!r} must be a number {relation} (e.g. optimizer.{key}=1e-4)")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SamlitError(
            f"trainer.accelerator={accelerator} (trainer=gpu/ddp) but this machine has no CUDA GPU that torch can use; "
            "use trainer=cpu or the default trainer (accelerator auto)"
        )
    cache_device = cfg.get("cache", {}).get("device", "auto")
    if cache_device == "cuda" and (accelerator == "cpu" or not torch.cuda.is_available()):
        raise SamlitError(
            "cache.device=cuda but the trainer does not run on a CUDA GPU; use cache.device=auto|cpu (auto keeps the "
            "embeddings on the GPU when training runs on one and they fit)"
        )


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-objects group (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(node) for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]


def group_choice(group: str, default: str) -> str:
    """The option picked for a config group (``loss=dice`` -> ``dice``), as Hydra recorded it."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    return default

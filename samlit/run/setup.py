"""From a composed config to the objects of a job: ``setup(cfg)`` builds the datamodule, the module, the
loggers and the trainer (with its callbacks) the same way for train, eval and embed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from samlit.data.datamodule import StaverDataModule
from samlit.model.module import SamFineTuner
from samlit.run.callbacks import MetricHistory
from samlit.run.testing import TestPredictions

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What a job runs on."""

    datamodule: StaverDataModule
    module: SamFineTuner
    trainer: L.Trainer
    loggers: list[Logger]
    history: MetricHistory


def setup(cfg: DictConfig, *, with_loggers: bool = True, keep: int = 4, order: str = "first") -> Job:
    """Seed, then build (in this order, so random weights are the same in every entry point) the datamodule
    (data prepared and split), the module, the loggers (``cfg.logger`` unless ``with_loggers`` is false) and
    the trainer with ``cfg.callbacks`` plus a ``MetricHistory`` and a ``TestPredictions(keep, order)``."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # generate synthetic scans / validate the layout before building anything big
    datamodule.setup("fit")
    log.info("data: %s", datamodule.summary())
    module = instantiate(cfg.module)
    history = MetricHistory(also=(cfg.optimized_metric,) if cfg.get("optimized_metric") else ())
    loggers = instantiate_group(cfg.get("logger")) if with_loggers else []
    callbacks = [*instantiate_group(cfg.get("callbacks")), history, TestPredictions(keep=keep, order=order)]
    if not loggers:  # logger=null / ~logger: Lightning refuses a learning-rate monitor with nowhere to log
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Job(datamodule=datamodule, module=module, trainer=trainer, loggers=loggers, history=history)


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

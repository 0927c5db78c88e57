"""``python train.py``: zero-shot test -> fine-tune the mask decoder -> test the best checkpoint -> export
-> report. The Hydra entry point only calls ``main(cfg)``.

Under DDP (``trainer=ddp``) every rank runs this function (``samlit.ddp``): all ranks build their share of the
embedding cache, test, train and test again together; rank 0 alone writes files (config, export, figures,
metrics.json, report) and the dashboards' images and tables.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, OnExceptionCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from samlit import atomic, dashboard, report
from samlit.config import group_choice, instantiate_group
from samlit.console import quiet_lightning, quiet_worker
from samlit.data.staver import read_scan, with_ink
from samlit.ddp import job_scope
from samlit.embed import build_embeddings
from samlit.errors import SamlitError
from samlit.export import export_run

log = logging.getLogger(__name__)


class Interrupted(SamlitError):
    """The run was stopped (SIGTERM) after writing ``checkpoints/interrupted.ckpt``."""


def main(cfg: DictConfig) -> float:
    """Run the whole job; returns the best ``val/iou`` (the value sweepers optimise)."""
    with job_scope():
        return run(cfg)


def run(cfg: DictConfig) -> float:
    start = time.perf_counter()
    quiet_lightning()
    quiet_worker(rank_zero_only.rank)
    run_dir = Path(cfg.paths.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    if rank_zero_only.rank == 0:
        atomic.write_text(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(resolved))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # generate synthetic scans / validate the layout before building anything big
    datamodule.setup("fit")
    log.info("data: %s", datamodule.summary())

    module = instantiate(cfg.module)
    history = report.MetricHistory()
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = [*instantiate_group(cfg.get("callbacks")), history]
    if not loggers:  # logger=null / ~logger: Lightning refuses a learning-rate monitor with nowhere to log
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(resolved)  # the full resolved config (rank 0 only: Lightning's loggers say so)

    build_embeddings(trainer=trainer, tuner=module, datamodule=datamodule)
    log.info("zero-shot test")
    zero_shot = report.stage_metrics(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    zero_shot_predictions, zero_shot_scores = module.test_predictions, module.test_scores

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SIGTERMException as stop:
        written = [c.ckpt_path for c in trainer.callbacks if isinstance(c, OnExceptionCheckpoint)]
        checkpoint = written[0] if written else run_dir / "checkpoints" / "last.ckpt"  # its callback turned off
        raise Interrupted(
            f"stopped by SIGTERM at step {trainer.global_step} (epoch {trainer.current_epoch}); checkpoint "
            f"{checkpoint}: resume with the same overrides + ckpt_path={checkpoint} hydra.run.dir={run_dir}"
        ) from stop
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    log.info("fine-tuned test (checkpoint: %s)", best_path or "last weights")
    fine_tuned = report.stage_metrics(
        trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True)[0]
    )
    objective = float(best_score) if best_score is not None else fine_tuned["iou"]
    if not trainer.is_global_zero:
        return objective

    model_type = cfg.model.model_type
    export_path, decoder_path = export_run(module.sam, run_dir / "export", model_type=model_type)

    kept = {p["key"] for p in zero_shot_predictions}
    drawn = {f.key: read_scan(f) for f in datamodule.splits["test"] if f.key in kept}
    figures = report.save_figures(
        run_dir / "figures",
        images={key: sample.image for key, sample in drawn.items()},
        boxes={key: with_ink(sample).boxes for key, sample in drawn.items()},
        zero_shot=zero_shot_predictions,
        fine_tuned=module.test_predictions,
    )
    curves = report.save_curves(run_dir / "figures" / "curves.png", history.epochs)
    per_scan = dashboard.scan_table(zero_shot=zero_shot_scores, fine_tuned=module.test_scores)
    metrics = report.write_metrics(
        run_dir / "metrics.json",
        model=model_type,
        loss=group_choice("loss", type(module.loss).__name__),
        zero_shot=zero_shot,
        fine_tuned=fine_tuned,
        best_val_iou=float(best_score) if best_score is not None else None,
        best_checkpoint=best_path,
        export=str(export_path.relative_to(run_dir)),
        export_decoder=str(decoder_path.relative_to(run_dir)),
        epochs=trainer.current_epoch,
        seed=cfg.seed,
        data=datamodule.summary(),
        embedding_cache={"mode": module.embeddings.mode, **asdict(module.embeddings.stats)},
        wall_time_s=round(time.perf_counter() - start, 1),
        world_size=trainer.world_size,
        per_scan=per_scan,
    )
    report.write_markdown(
        run_dir / "report.md",
        metrics=metrics,
        figures=figures,
        run_dir=run_dir,
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        curves=curves,
    )
    step = trainer.global_step
    dashboard.log_table(loggers, key="test/per_scan", rows=per_scan)
    dashboard.log_images(
        loggers,
        key="test/overlays",
        images=[dashboard.shrink(report.read_png(p), max_side=1152) for p in figures],
        captions=[p.stem for p in figures],
        step=step,
    )
    dashboard.close(loggers)
    log.info("embedding cache: %s", module.embeddings.stats.line())
    report.print_summary(metrics, run_dir=run_dir)
    return objective

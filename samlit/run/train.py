"""``python train.py``: zero-shot test -> fine-tune the mask decoder -> test the best checkpoint -> export
-> report. The Hydra entry point only calls ``main(cfg)``.

Under DDP (``trainer=ddp``) every rank runs this function (``samlit.launch.ddp``): all ranks prepare their share
of the store, test, train and test again together; rank 0 alone writes files (config, export,
figures, metrics.json, report) and the dashboards' images and tables.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.core.images import read_rgb
from samlit.model.hq import hq_summary, sam_token_while_fresh
from samlit.model.lora import parameter_counts
from samlit.run import dashboard, figures, report
from samlit.run.callbacks import InterruptCheckpoint
from samlit.run.ceiling import frame_ceilings
from samlit.run.export import export_adapters, export_run
from samlit.run.prepare import PrepareStats, prepare
from samlit.run.rundir import claim_run_dir
from samlit.run.setup import Job, group_choice, setup
from samlit.run.testing import TestResult, run_test

log = logging.getLogger(__name__)


class Interrupted(SamlitError):
    """The run was stopped (SIGTERM or Ctrl-C) after writing ``checkpoints/interrupted.ckpt``."""


def main(cfg: DictConfig) -> float:
    """Run the whole job; returns the best per-epoch value of ``cfg.optimized_metric`` (what sweepers optimise)."""
    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    check_resume_checkpoint(cfg.get("ckpt_path"))
    if rank_zero_only.rank == 0:  # the other DDP ranks start after rank 0 has written its config
        claim_run_dir(run_dir, marker="config_resolved.yaml", resume=cfg.get("ckpt_path"))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    if rank_zero_only.rank == 0:
        atomic.write_text(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(resolved))
    job = setup(cfg, keep=cfg.figures)
    trainer, module = job.trainer, job.module
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in module.named_parameters() if ".lora_" not in n)
    adapters = f" (LoRA adapters: peft={group_choice('peft', 'none')})" if module.peft.enabled else ""
    log.info(
        "model: %s, %.2f M of %.2f M parameters train%s", cfg.model.model_type, trainable / 1e6, total / 1e6, adapters
    )
    for logger in job.loggers:
        logger.log_hyperparams(resolved)  # the full resolved config (rank 0 only: Lightning's loggers say so)

    prepared = prepare(trainer=trainer, module=module, datamodule=job.datamodule, other_frame=True)
    log.info("zero-shot test")
    with sam_token_while_fresh(module.sam.mask_decoder) as sam_token:
        if sam_token:
            log.info(
                "HQ mode: the HQ token starts fresh, so the zero-shot row is SAM's own decoder (HQ token left out)"
            )
        zero_shot = run_test(trainer, module, job.datamodule)
    hq = hq_summary(module.sam.mask_decoder, hq_train=cfg.model.get("hq_train"), zero_shot_sam_token=sam_token)
    fine_tune(job, ckpt_path=cfg.get("ckpt_path"), run_dir=run_dir)
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best_path and not Path(best_path).is_file():
        log.warning("best checkpoint %s is gone (its run dir was moved?): testing the last weights", best_path)
        best_path = ""
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    log.info("fine-tuned test (checkpoint: %s)", best_path or "last weights")
    fine_tuned = run_test(trainer, module, job.datamodule, ckpt_path=best_path or None, weights_only=True)
    objective = optimized_value(job, cfg.optimized_metric, fallback=fine_tuned.metrics["iou"])
    if trainer.is_global_zero:
        write_outputs(
            job,
            cfg=cfg,
            run_dir=run_dir,
            zero_shot=zero_shot,
            fine_tuned=fine_tuned,
            best_path=best_path,
            best_score=best_score,
            prepared=prepared,
            start=start,
            hq=hq,
        )
    return objective


def trained_summary(module: Any, *, peft: str) -> dict[str, Any]:
    """What trained (``metrics.json`` ``trained``): the ``peft`` option, its settings (``None`` without adapters) and
    the parameter counts per part (``samlit.model.lora.parameter_counts``)."""
    return {
        "peft": peft if module.peft.enabled else "none",
        "settings": module.peft.settings() if module.peft.enabled else None,
        "parameters": parameter_counts(module.sam),
    }


def check_resume_checkpoint(path: str | None) -> None:
    """``ckpt_path=``: a readable Lightning checkpoint of a fit, checked before any data or model is built."""
    if path is None:
        return
    file = Path(str(path)).expanduser()
    fix = "pass a run's checkpoints/last.ckpt or interrupted.ckpt"
    if not file.is_file() or file.stat().st_size == 0:
        problem = "does not exist" if not file.exists() else "is empty" if file.is_file() else "is not a file"
        raise SamlitError(f"ckpt_path={path} {problem}; {fix}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated or not a torch file: unpickling errors come in many types
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise SamlitError(f"ckpt_path={path} is not a readable weights-only checkpoint ({reason}); {fix}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise SamlitError(
            f"ckpt_path={path} is not a Lightning checkpoint of a train.py fit (an export or plain SAM weights "
            f"go to model.weights= or model.decoder_weights=); {fix}"
        )


def fine_tune(job: Job, *, ckpt_path: str | None, run_dir: Path) -> None:
    """``trainer.fit``; a SIGTERM or Ctrl-C mid-fit becomes a one-line error naming the checkpoint to resume from.

    Ctrl-C takes the SIGTERM path (``stop_like_sigterm``): Lightning stops after the current step and the
    checkpoint holds whole steps only, so resuming from it is exact. A KeyboardInterrupt raised mid-step would
    leave the loader one batch ahead of the step count: the resumed run skipped a batch.
    """
    trainer = job.trainer
    stopped_by: list[str] = []
    try:
        with stop_like_sigterm(stopped_by):
            trainer.fit(job.module, datamodule=job.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException as stop:
        written = [c.ckpt_path for c in trainer.callbacks if isinstance(c, InterruptCheckpoint)]
        checkpoint = written[0] if written else run_dir / "checkpoints" / "last.ckpt"  # its callback turned off
        raise Interrupted(
            f"stopped by {stopped_by[0] if stopped_by else 'SIGTERM'} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); checkpoint {checkpoint}: resume with the same overrides + "
            f"ckpt_path={checkpoint} hydra.run.dir={run_dir}"
        ) from stop


@contextmanager
def stop_like_sigterm(stopped_by: list[str]) -> Iterator[None]:
    """While inside: the first Ctrl-C (SIGINT) is sent on as SIGTERM, which Lightning handles between steps
    (``"Ctrl-C"`` is appended to ``stopped_by``); a second Ctrl-C interrupts at once. Before Lightning has set its
    SIGTERM handler (fit's setup), Ctrl-C interrupts at once too: there is nothing to save yet."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C: now
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt
        stopped_by.append("Ctrl-C")
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def optimized_value(job: Job, key: str, *, fallback: float) -> float:
    """The best per-epoch value of ``key``: the best checkpoint's score when that is what it monitors (it
    survives a resume), else the best in this process's history; ``fallback`` when ``key`` was never logged."""
    checkpoint = job.trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.monitor == key and checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    best = job.history.best(key)
    return best if best is not None else fallback


def write_outputs(
    job: Job,
    *,
    cfg: DictConfig,
    run_dir: Path,
    zero_shot: TestResult,
    fine_tuned: TestResult,
    best_path: str,
    best_score: float | None,
    prepared: PrepareStats,
    start: float,
    hq: dict[str, Any] | None = None,
) -> None:
    """Rank 0: the export, figures, ``metrics.json``, ``report.md``, the dashboards' tables and images."""
    trainer, module = job.trainer, job.module
    model_type = cfg.model.model_type
    export_path, decoder_path = export_run(module.sam, run_dir / "export", model_type=model_type)
    adapters_path = None
    if module.peft.enabled:  # the unmerged adapters too (the exports above hold them merged)
        adapters_path = export_adapters(
            module.sam, run_dir / "export" / "adapters.safetensors", spec=module.peft, model_type=model_type
        )
    drawn = figures.save_comparisons(run_dir / "figures", before=zero_shot.kept, after=fine_tuned.kept)
    curves = figures.save_curves(run_dir / "figures" / "curves.png", job.history.epochs)
    per_image = dashboard.image_table(zero_shot=zero_shot.rows, fine_tuned=fine_tuned.rows)
    metrics = report.write_metrics(
        run_dir / "metrics.json",
        model=model_type,
        loss=group_choice("loss", type(module.loss).__name__),
        zero_shot=zero_shot.metrics,
        fine_tuned=fine_tuned.metrics,
        best_val_iou=float(best_score) if best_score is not None else None,
        best_checkpoint=best_path,
        export=str(export_path.relative_to(run_dir)),
        export_decoder=str(decoder_path.relative_to(run_dir)),
        **({"export_adapters": str(adapters_path.relative_to(run_dir))} if adapters_path else {}),
        trained=trained_summary(module, peft=group_choice("peft", "none")),
        epochs=trainer.current_epoch,
        seed=cfg.seed,
        frame={
            "crop": job.datamodule.crop,
            "crop_margin": job.datamodule.crop_margin,
            "ceiling": frame_ceilings(job.datamodule, "test"),
        },
        data=job.datamodule.summary(),
        store={
            "mode": job.datamodule.store.mode if job.datamodule.store else "none",
            **asdict(prepared),
            "encoded_in_steps": module.encoder_calls,
        },
        hq=hq,
        wall_time_s=round(time.perf_counter() - start, 1),
        world_size=trainer.world_size,
        per_image=per_image,
    )
    click_curve = figures.save_click_curve(run_dir / "figures" / "clicks.png", curves=report.click_stages(metrics))
    report.write_markdown(
        run_dir / "report.md",
        metrics=metrics,
        figures=list(drawn),
        run_dir=run_dir,
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        curves=curves,
        click_curve=click_curve,
    )
    dashboard.log_table(job.loggers, key="test/per_image", rows=per_image)
    if click_curve is not None:  # the IoU-vs-clicks curve; its scalars went through Lightning (test/clicks/...)
        dashboard.log_images(
            job.loggers,
            key="test/click_curve",
            images=[read_rgb(click_curve)],
            captions=["IoU vs clicks"],
            step=trainer.global_step,
        )
    dashboard.log_images(
        job.loggers,
        key="test/overlays",
        images=[dashboard.shrink(picture, max_side=1152) for picture in drawn.values()],
        captions=[p.stem for p in drawn],
        step=trainer.global_step,
    )
    dashboard.close(job.loggers)
    log.info("store: %s", prepared.line())
    report.print_summary(metrics, run_dir=run_dir)

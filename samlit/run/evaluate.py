"""``python eval.py``: test-split IoU / Dice / stroke scores of any SAM weights on StaVer-layout data, no training.

    python eval.py model=vit_b data=staver data.root=/data/staver                      # zero-shot SAM
    python eval.py model=vit_b model.decoder_weights=<run>/export/sam_vit_b_decoder.pth data=staver ...

Zero-shot vs fine-tuned is these two calls. Writes ``metrics.json`` (the metrics of ``run_test``: IoU, Dice,
boundary IoU, clDice; per-image rows; with ``clicks=N`` the N-click curve, NoC@85 / NoC@90 and
``figures/clicks.png``) and overlays of the worst test images (ground truth | prediction, with the box prompts)
into ``figures/``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from samlit.core import atomic
from samlit.core.batch import Prediction
from samlit.core.images import write_png
from samlit.model.hq import sam_token_while_fresh
from samlit.run.figures import prediction_panels, save_click_curve
from samlit.run.prepare import prepare
from samlit.run.report import click_stages, click_summary
from samlit.run.rundir import claim_run_dir, follow_run_model, run_frame
from samlit.run.setup import setup
from samlit.run.testing import run_test

log = logging.getLogger(__name__)


def worst_case_figures(out_dir: Path, worst: list[Prediction]) -> list[Path]:
    """Ground truth | prediction (boxes drawn) for each of ``worst``, lowest IoU first."""
    paths = []
    for rank, predicted in enumerate(worst, start=1):
        picture = prediction_panels({"prediction": predicted})
        paths.append(write_png(out_dir / f"worst_{rank}_{predicted['key']}.png", picture))
    return paths


def use_run_frame(cfg: DictConfig) -> None:
    """Weights from a train.py run, and no ``data.crop*`` override: evaluate in the run's own frame (and, without a
    ``model.hq*`` override, with its HQ mode: ``follow_run_model``)."""
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    follow_run_model(cfg.model, given=list(given))
    run = run_frame(cfg.model.get("decoder_weights"), cfg.model.get("weights"))
    if run is None or any(o.lstrip("+~").startswith("data.crop") for o in given):
        return
    log.info("frame of the run that made these weights: data.crop=%s data.crop_margin=%s", *run.values())
    with open_dict(cfg):
        cfg.data.crop, cfg.data.crop_margin = run["crop"], run["crop_margin"]


def main(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    claim_run_dir(run_dir, marker="metrics.json")
    use_run_frame(cfg)
    job = setup(cfg, with_loggers=False, keep=cfg.worst_cases, order="worst", needs=("test",))
    prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, splits=("test",))  # what it reads
    with sam_token_while_fresh(job.module.sam.mask_decoder) as sam_token:
        if sam_token:
            log.warning("model.hq=true without HQ weights: the HQ token is untrained, so SAM's own decoder is tested")
        tested = run_test(job.trainer, job.module, job.datamodule)
    figures = worst_case_figures(run_dir / "figures", tested.kept)
    metrics = {
        "model": cfg.model.model_type,
        "weights": str(cfg.model.weights),
        "decoder_weights": cfg.model.get("decoder_weights"),
        "split": "test",
        "frame": {"crop": job.datamodule.crop, "crop_margin": job.datamodule.crop_margin},
        **tested.metrics,
        "data": job.datamodule.summary(),
        "per_image": sorted(tested.rows, key=lambda s: s["iou"]),
        "worst_case_figures": [str(p.relative_to(run_dir)) for p in figures],
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    click_curve = save_click_curve(run_dir / "figures" / "clicks.png", curves=click_stages(metrics))
    if click_curve is not None:
        metrics["click_curve"] = str(click_curve.relative_to(run_dir))
    atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(
        f"{metrics['model']} ({metrics['weights']}, decoder {metrics['decoder_weights'] or 'same'}): test IoU "
        f"{tested.metrics['iou']:.4f}, Dice {tested.metrics['dice']:.4f}, boundary IoU 1px "
        f"{tested.metrics['boundary_iou']['1px']:.4f}, clDice {tested.metrics['cldice']:.4f} over "
        f"{tested.metrics['n_masks']} masks"
        + (f"\n{click_summary(metrics['clicks'])}" if "clicks" in metrics else "")
        + f"\nrun dir: {run_dir}"
    )
    return metrics

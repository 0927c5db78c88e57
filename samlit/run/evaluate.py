"""``python eval.py``: test-split IoU / Dice of any SAM weights on StaVer-layout data, no training.

    python eval.py model=vit_b data=staver data.root=/data/staver                      # zero-shot SAM
    python eval.py model=vit_b model.decoder_weights=<run>/export/sam_vit_b_decoder.pth data=staver ...

Zero-shot vs fine-tuned is these two calls. Writes ``metrics.json`` (the metrics, per-image IoU) and overlays
of the worst test images (ground truth | prediction, with the box prompts) into ``figures/``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from samlit.core import atomic
from samlit.core.images import write_png
from samlit.model.module import Prediction
from samlit.run.embed import build_embeddings
from samlit.run.figures import comparison, scan_image
from samlit.run.setup import setup
from samlit.run.testing import run_test

log = logging.getLogger(__name__)


def worst_case_figures(out_dir: Path, worst: list[Prediction]) -> list[Path]:
    """Ground truth | prediction (boxes drawn) for each of ``worst``, lowest IoU first."""
    paths = []
    for rank, predicted in enumerate(worst, start=1):
        truth, pred = predicted["masks"].numpy(), predicted["pred"].numpy()
        title = f"prediction IoU {predicted['iou']:.3f}"
        picture = comparison(scan_image(predicted), truth, {title: pred}, predicted["pixel_boxes"].numpy())
        paths.append(write_png(out_dir / f"worst_{rank}_{predicted['key']}.png", picture))
    return paths


def main(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    job = setup(cfg, with_loggers=False, keep=cfg.worst_cases, order="worst")
    build_embeddings(trainer=job.trainer, tuner=job.module, datamodule=job.datamodule)
    tested = run_test(job.trainer, job.module, job.datamodule)
    figures = worst_case_figures(run_dir / "figures", tested.kept)
    metrics = {
        "model": cfg.model.model_type,
        "weights": str(cfg.model.weights),
        "decoder_weights": cfg.model.get("decoder_weights"),
        "split": "test",
        **tested.metrics,
        "data": job.datamodule.summary(),
        "per_image": sorted(tested.rows, key=lambda s: s["iou"]),
        "worst_case_figures": [str(p.relative_to(run_dir)) for p in figures],
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(
        f"{metrics['model']} ({metrics['weights']}, decoder {metrics['decoder_weights'] or 'same'}): test IoU "
        f"{tested.metrics['iou']:.4f}, Dice {tested.metrics['dice']:.4f} over {tested.metrics['n_masks']} masks\n"
        f"run dir: {run_dir}"
    )
    return metrics

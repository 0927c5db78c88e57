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

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from samlit import atomic, report
from samlit.config import instantiate_group
from samlit.console import quiet_lightning
from samlit.data.staver import read_scan, with_ink
from samlit.embed import build_embeddings
from samlit.predict import predict_masks

log = logging.getLogger(__name__)


def worst_case_figures(
    out_dir: Path, *, sam: Any, datamodule: Any, scores: list[dict[str, Any]], count: int, mask_threshold: float
) -> list[Path]:
    """Ground truth | prediction (boxes drawn) for the ``count`` test images with the lowest IoU."""
    by_key = {f.key: f for f in datamodule.splits["test"]}
    paths = []
    for rank, score in enumerate(sorted(scores, key=lambda s: s["iou"])[:count], start=1):
        sample = with_ink(read_scan(by_key[score["key"]], min_region_area=datamodule.min_region_area))
        masks, boxes = sample.masks, sample.boxes
        pred, _ = predict_masks(sam, sample.image, boxes, mask_threshold=mask_threshold)
        panels = report.comparison(sample.image, masks, {f"prediction IoU {score['iou']:.3f}": pred}, boxes)
        paths.append(atomic.write_bytes(out_dir / f"worst_{rank}_{score['key']}.png", report.side_by_side(panels)))
    return paths


def main(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    quiet_lightning()
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    module = instantiate(cfg.module)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=False)
    build_embeddings(trainer=trainer, tuner=module, datamodule=datamodule)
    tested = report.stage_metrics(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    figures = worst_case_figures(
        run_dir / "figures",
        sam=module.sam,
        datamodule=datamodule,
        scores=module.test_scores,
        count=cfg.worst_cases,
        mask_threshold=module.hparams.mask_threshold,
    )
    metrics = {
        "model": cfg.model.model_type,
        "weights": str(cfg.model.weights),
        "decoder_weights": cfg.model.get("decoder_weights"),
        "split": "test",
        **tested,
        "data": datamodule.summary(),
        "per_image": sorted(module.test_scores, key=lambda s: s["iou"]),
        "worst_case_figures": [str(p.relative_to(run_dir)) for p in figures],
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(
        f"{metrics['model']} ({metrics['weights']}, decoder {metrics['decoder_weights'] or 'same'}): test IoU "
        f"{tested['iou']:.4f}, Dice {tested['dice']:.4f} over {tested['n_masks']} masks\nrun dir: {run_dir}"
    )
    return metrics

"""Does a bf16 decoder (``trainer=gpu``: ``precision=bf16-mixed``) change the metrics beyond seed noise?

On this CPU, Lightning's bf16-mixed precision runs the decoder's forward, loss and backward under bf16 autocast,
as a GPU run does. For each seed, the same run (same random weights, data, split, prompts) is trained and tested
twice: ``32-true`` and ``bf16-mixed``. The embeddings are computed once per seed in fp32 and serve both (a bf16
encoder on a CPU without bf16 units is ~25x slower; the cache's own fp16 storage is measured in the README), so
what differs is the decoder's precision alone. Printed: fine-tuned test IoU per seed and precision, the mean
bf16 - fp32 difference and the spread (standard deviation) of the fp32 IoU across seeds.

    python bench/bf16_decoder.py [--seeds 0,1,2] [train.py overrides ...]      # default: trainer.max_epochs=6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from harness import bare_trainer
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from samlit.launch import resolvers  # noqa: F401  (the configs' resolvers)
from samlit.launch.console import quiet_lightning
from samlit.run.prepare import prepare
from samlit.run.setup import setup
from samlit.run.testing import run_test

CONF = Path(__file__).resolve().parents[1] / "conf"


def fine_tuned_iou(overrides: list[str], *, seed: int, precision: str, root: Path) -> float:
    """Fit under ``precision`` and test the last weights; ``32-true`` (run first) builds the seed's cache in fp32,
    which ``bf16-mixed`` then reads."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root_dir={root}",
                f"paths.cache_dir={root}/cache",
                f"seed={seed}",
                f"trainer.precision={precision}",
                "logger=[]",
                "+trainer.enable_progress_bar=false",
                "~callbacks.rich_progress_bar",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / f"run-{seed}-{precision}")
        del cfg["hydra"]
    job = setup(cfg, with_loggers=False)
    # the same fp32 embeddings serve both precisions: prepared under a 32-true trainer (a warm store for the second)
    prepare(trainer=bare_trainer(), module=job.module, datamodule=job.datamodule, other_frame=False)
    job.trainer.fit(job.module, datamodule=job.datamodule)
    iou = run_test(job.trainer, job.module, job.datamodule).metrics["iou"]
    if job.module.encoder_calls:
        raise SystemExit(f"{job.module.encoder_calls} frames were encoded in steps under {precision}")
    return iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (default: trainer.max_epochs=6)")
    args = parser.parse_args()
    overrides = args.overrides or ["trainer.max_epochs=6"]
    quiet_lightning()
    seeds = [int(s) for s in args.seeds.split(",")]
    iou: dict[str, list[float]] = {"32-true": [], "bf16-mixed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for precision in iou:
                iou[precision].append(fine_tuned_iou(overrides, seed=seed, precision=precision, root=Path(tmp)))
                print(f"seed {seed}, precision {precision}: fine-tuned test IoU {iou[precision][-1]:.4f}", flush=True)
    differences = [b - a for a, b in zip(iou["32-true"], iou["bf16-mixed"], strict=True)]
    spread = statistics.stdev(iou["32-true"]) if len(seeds) > 1 else float("nan")
    print(
        f"mean IoU: 32-true {statistics.mean(iou['32-true']):.4f}, bf16-mixed {statistics.mean(iou['bf16-mixed']):.4f}"
    )
    print(
        f"bf16 - fp32 per seed: {', '.join(f'{d:+.4f}' for d in differences)}; mean {statistics.mean(differences):+.4f}"
    )
    print(f"seed spread of the fp32 IoU (std over {len(seeds)} seeds): {spread:.4f}")
    print(f"command: python bench/bf16_decoder.py --seeds {args.seeds} {' '.join(overrides)}")


if __name__ == "__main__":
    sys.exit(main())

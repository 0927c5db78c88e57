"""What the stroke scores (``samlit.core.strokes``: boundary IoU at 1, 2, 3 px and 2 %, clDice) cost a test pass:
``trainer.test`` over the test split of the default config (the tiny SAM), with them and without them (the test
pass as it was before: IoU / Dice metrics and rows), alternating in one process, in box crops and in whole
pages (``data.crop=none``: masks at page size).

    python bench/stroke_metrics.py [--repeats 5] [train.py overrides ...]
    python bench/stroke_metrics.py                                          # 48 synthetic scans of 512 px
    python bench/stroke_metrics.py data.image_size=2339 data.num_scans=16   # A4 pages at 200 dpi

Prints per frame the best wall time of a test pass with and without (the runs alternate; the best of each is the
least disturbed by other work on the machine), their ratio, the time spent inside ``stroke_scores`` (each mask
scored once per pass), and every run. The tiny SAM's random decoder predicts noise across the whole crop or page,
the costliest masks to skeletonise (``skeletonize`` sweeps the whole box for every layer it peels off); the last
column times ``stroke_scores`` on stamp-shaped masks instead (each item's ground truth against itself) and the
ratio that cost would give.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import samlit.model.module
import samlit.run.testing
from samlit.core.masks import mask_scores
from samlit.core.strokes import stroke_scores
from samlit.launch import resolvers  # noqa: F401  (the configs' resolvers)
from samlit.launch.console import quiet_lightning
from samlit.model.metrics import stage_metrics
from samlit.run.prepare import prepare
from samlit.run.setup import Job, setup

CONF = Path(__file__).resolve().parents[1] / "conf"


def iou_dice_row(key: str, *, pred: Any, truth: Any, strokes: Any = None) -> dict[str, Any]:
    """A per-image row as it was before the stroke scores: IoU and Dice only."""
    iou, dice = mask_scores(pred, truth)
    return {"key": key, "masks": len(truth), "iou": iou.mean().item(), "dice": dice.mean().item()}


@contextmanager
def without_strokes(job: Job) -> Iterator[None]:
    """The test pass without stroke scores: IoU / Dice metrics, no scoring in the step, IoU / Dice rows."""
    module = job.module
    kept = module.test_metrics
    module.test_metrics = stage_metrics("test", strokes=False).to(module.device)
    try:
        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(samlit.model.module, "stroke_scores", lambda pred, truth: None))
            stack.enter_context(mock.patch.object(samlit.run.testing, "scan_row", iou_dice_row))
            yield
    finally:
        module.test_metrics = kept


@contextmanager
def timed_strokes(seconds: list[float]) -> Iterator[None]:
    """Add the wall time of every ``stroke_scores`` call in the step to ``seconds[0]``."""
    scores: Callable[..., Any] = samlit.model.module.stroke_scores

    def timed(pred: Any, truth: Any) -> Any:
        start = time.perf_counter()
        try:
            return scores(pred, truth)
        finally:
            seconds[0] += time.perf_counter() - start

    with mock.patch.object(samlit.model.module, "stroke_scores", timed):
        yield


def one_test_pass(job: Job) -> float:
    start = time.perf_counter()
    job.trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    return time.perf_counter() - start


def measure(root: Path, overrides: list[str], *, repeats: int) -> dict[str, Any]:
    """Best test-pass seconds with and without the stroke scores, alternating (first pass: a warm-up)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        rooted = [f"paths.root_dir={root}", f"paths.cache_dir={root}/cache", *overrides]
        cfg = compose("train", overrides=rooted, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
        cfg.callbacks.pop("rich_progress_bar", None)
        cfg.trainer.enable_progress_bar = False
    quiet_lightning()
    job = setup(cfg, with_loggers=False, needs=("test",))
    prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, splits=("test",))
    one_test_pass(job)  # warm-up: loaders, allocator, first decoder call
    times: dict[str, list[float]] = {"with": [], "without": []}
    inside = [0.0]
    for repeat in range(repeats):
        for variant in ("with", "without") if repeat % 2 == 0 else ("without", "with"):
            with timed_strokes(inside) if variant == "with" else without_strokes(job):
                times[variant].append(one_test_pass(job))
    tested = job.trainer.callback_metrics
    truths = [item["masks"] for item in job.datamodule.dataset("test", train=False)]
    start = time.perf_counter()
    for masks in truths:  # stamp-shaped predictions: each item's ground truth scored against itself
        stroke_scores(masks, masks)
    return {
        "with": min(times["with"]),
        "without": min(times["without"]),
        "runs": times,
        "strokes_s": inside[0] / repeats,
        "masks": int(tested["test/n_masks"]),
        "items": len(truths),
        "truth_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="test passes per variant (after one warm-up)")
    parser.add_argument("overrides", nargs="*", help="config overrides, as train.py takes them")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for crop in ("box", "none"):
            root = Path(tmp) / crop
            root.mkdir()
            rows.append((crop, measure(root, [*args.overrides, f"data.crop={crop}"], repeats=args.repeats)))
    print(
        "frame | items | masks | test pass with strokes | without | ratio | in stroke_scores per pass (per mask) | "
        "the same for the ground truth as prediction (ratio it implies)"
    )
    for crop, m in rows:
        inside, truth = 1000 * m["strokes_s"], 1000 * m["truth_s"]
        implied = (m["without"] + m["truth_s"]) / m["without"]
        print(
            f"{'box crops' if crop == 'box' else 'whole pages'} | {m['items']} | {m['masks']} | {m['with']:.2f} s | "
            f"{m['without']:.2f} s | {m['with'] / m['without']:.3f} | {inside:.0f} ms ({inside / m['masks']:.1f} ms) "
            f"| {truth:.0f} ms ({truth / m['masks']:.1f} ms; {implied:.3f})"
        )
    for crop, m in rows:
        runs = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(m["runs"]["with"], m["runs"]["without"], strict=True))
        print(f"{crop}: runs with/without (s): {runs}")
    rerun = f"--repeats {args.repeats} {' '.join(args.overrides)}"
    print(f"command: python bench/stroke_metrics.py {rerun}".rstrip())


if __name__ == "__main__":
    sys.exit(main())

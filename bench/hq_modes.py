"""Plain SAM decoder vs HQ mode, trained the same way: ``train.py`` with ``model.hq=false``, ``model.hq=true
model.hq_train=hq`` and ``model.hq=true model.hq_train=hq+decoder`` (same data, seed and epochs; each run generates
its data and fills a fresh store, so the wall times hold the same work besides the mode), then one table: test IoU,
boundary IoU at 1 px and clDice (zero-shot -> fine-tuned), the frame's ceiling, the median time of a training step
(a callback timing ``on_train_batch_start`` -> ``end`` inside the run), the bytes of a prepared entry with features
and the wall time.

    python bench/hq_modes.py [--modes plain,hq,hq+decoder] [train.py overrides ...]
    python bench/hq_modes.py trainer.max_epochs=12                                          # the default data
    python bench/hq_modes.py data.image_size=2339 data.num_scans=16 trainer.max_epochs=12   # A4 at 200 dpi
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

from samlit.data.store import read_metadata

REPO = Path(__file__).resolve().parents[1]
MODES = {
    "plain": ["model.hq=false"],
    "hq": ["model.hq=true", "model.hq_train=hq"],
    "hq+decoder": ["model.hq=true", "model.hq_train=hq+decoder"],
}


class StepTimes(L.Callback):
    """Writes the wall time of every training step (seconds) to ``path`` when the fit ends (used inside train.py
    through ``+callbacks.step_times._target_=hq_modes.StepTimes``)."""

    def __init__(self, path: str) -> None:
        self.path, self.steps = Path(path), []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self.steps.append(time.perf_counter() - self._start)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.path.write_text(json.dumps(self.steps))


def entry_bytes(store: Path) -> float:
    """Mean size of the store's entries that hold features (the run's own frame), bytes."""
    sizes = [
        p.stat().st_size for p in store.rglob("*.safetensors") if read_metadata(p.read_bytes()[:65536])["features"]
    ]
    return statistics.mean(sizes)


def train(root: Path, *overrides: str) -> tuple[dict, float, list[float]]:
    steps = root / "steps.json"
    command = [sys.executable, str(REPO / "train.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    command += [*overrides, f"hydra.run.dir={root / 'run'}"]
    command += ["+callbacks.step_times._target_=hq_modes.StepTimes", f"+callbacks.step_times.path={steps}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    wall = time.perf_counter() - start
    return json.loads((root / "run" / "metrics.json").read_text()), wall, json.loads(steps.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES), help="which of " + ", ".join(MODES))
    args, overrides = parser.parse_known_args()
    chosen = args.modes.split(",")
    if unknown := [m for m in chosen if m not in MODES]:
        parser.error(f"--modes: {', '.join(unknown)} not one of {', '.join(MODES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode in ((name, MODES[name]) for name in chosen):
            root = Path(tmp) / str(len(rows))
            root.mkdir()
            metrics, wall, steps = train(root, *overrides, *mode)
            rows.append((name, metrics, wall, statistics.median(steps[1:] or steps), entry_bytes(root / "cache")))
    print("mode | test IoU | boundary IoU 1px | clDice | ceiling | step (median) | entry | wall")
    print("---|---|---|---|---|---|---|---")
    for name, metrics, wall, step, size in rows:
        zero, tuned = metrics["zero_shot"], metrics["fine_tuned"]
        crop = metrics["frame"]["crop"]
        ceiling = metrics["frame"]["ceiling"][crop]["iou"]
        pairs = [
            (zero["iou"], tuned["iou"]),
            (zero["boundary_iou"]["1px"], tuned["boundary_iou"]["1px"]),
            (zero["cldice"], tuned["cldice"]),
        ]
        scores = " | ".join(f"{z:.4f} -> {t:.4f}" for z, t in pairs)
        print(f"{name} | {scores} | {ceiling:.4f} | {step * 1000:.0f} ms | {size / 2**20:.2f} MiB | {wall:.0f} s")
    print(f"test masks: {rows[0][1]['fine_tuned']['n_masks']}; epochs: {rows[0][1]['epochs']}")
    modes = "" if chosen == list(MODES) else f"--modes={','.join(chosen)} "
    print(f"command: python bench/hq_modes.py {modes}{' '.join(overrides)}".rstrip())


if __name__ == "__main__":
    main()

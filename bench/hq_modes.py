"""Plain SAM decoder vs HQ mode, trained the same way: ``train.py`` with ``model.hq=false``, ``model.hq=true
model.hq_train=hq`` and ``model.hq=true model.hq_train=hq+decoder`` (same data, seed and epochs; each run generates
its data and fills a fresh store, so the wall times hold the same work besides the mode), then one table: test IoU,
boundary IoU at 1 px and clDice (zero-shot -> fine-tuned), the frame's ceiling, the median time of a training step
(``harness.StepTimes`` inside the run), the bytes of a prepared entry with features
and the wall time.

    python bench/hq_modes.py [--modes plain,hq,hq+decoder] [train.py overrides ...]
    python bench/hq_modes.py trainer.max_epochs=12                                          # the default data
    python bench/hq_modes.py data.image_size=2339 data.num_scans=16 trainer.max_epochs=12   # A4 at 200 dpi
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from harness import chosen_modes, train_run

from samlit.data.store import read_metadata

REPO = Path(__file__).resolve().parents[1]
MODES = {
    "plain": ["model.hq=false"],
    "hq": ["model.hq=true", "model.hq_train=hq"],
    "hq+decoder": ["model.hq=true", "model.hq_train=hq+decoder"],
}


def entry_bytes(store: Path) -> float:
    """Mean size of the store's entries that hold features (the run's own frame), bytes."""
    sizes = [
        p.stat().st_size for p in store.rglob("*.safetensors") if read_metadata(p.read_bytes()[:65536])["features"]
    ]
    return statistics.mean(sizes)


def main() -> None:
    chosen, overrides = chosen_modes(__doc__, MODES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode in ((name, MODES[name]) for name in chosen):
            root = Path(tmp) / str(len(rows))
            root.mkdir()
            metrics, wall, steps, _ = train_run(root, *overrides, *mode)
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

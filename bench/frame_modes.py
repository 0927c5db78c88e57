"""Page frame vs box crops, trained the same way: ``train.py`` once with ``data.crop=none`` and once with
``data.crop=box`` (same data and seed, epochs; each run generates its data and fills a fresh cache, so both wall
times hold the same work besides the frame), then one table: fine-tuned / zero-shot test IoU,
the oracle ceiling of each frame, encoder passes and wall time.

    python bench/frame_modes.py [--margin 0.1] [train.py overrides ...]
    python bench/frame_modes.py trainer.max_epochs=12                                   # the default data (512 px)
    python bench/frame_modes.py data.image_size=2339 data.num_scans=16 trainer.max_epochs=12   # A4 at 200 dpi
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(root: Path, *overrides: str) -> tuple[dict, float]:
    command = [sys.executable, str(REPO / "train.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, *overrides, "hydra.run.dir=" + str(root / "run")], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    return json.loads((root / "run" / "metrics.json").read_text()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--margin", type=float, default=0.1, help="data.crop_margin of the crop run")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for crop in ("none", "box"):
            root = Path(tmp) / crop
            root.mkdir()
            frame = [f"data.crop={crop}", f"data.crop_margin={args.margin}"]
            metrics, wall = train(root, *args.overrides, *frame)
            rows.append((crop, metrics, wall))
    print("frame | fine-tuned IoU | zero-shot IoU | ceiling | masks | encoder passes | wall")
    for crop, metrics, wall in rows:
        tuned, zero = metrics["fine_tuned"], metrics["zero_shot"]
        ceiling = metrics["frame"]["ceiling"][crop]["iou"]
        passes = metrics["store"]["encoded"]
        scores = f"{tuned['iou']:.4f} | {zero['iou']:.4f} | {ceiling:.4f}"
        print(f"{crop} | {scores} | {tuned['n_masks']} | {passes} | {wall:.0f} s")
    print(f"command: python bench/frame_modes.py --margin {args.margin} {' '.join(args.overrides)}".rstrip())


if __name__ == "__main__":
    main()

"""Peak resident memory (RSS) of a whole ``train.py`` run on CPU with a prepared store, vit_h by default.

Two child processes, each reporting its own peak: ``prepare.py`` fills the store (the encoder runs), then
``train.py`` trains, tests, exports and reports reading every item and embedding from the store.

    python bench/peak_memory.py [--model vit_h] [--scans 4] [--size 512] [--limit-gib 8]

Last line: ``peak_rss: <GiB> GiB train.py with a prepared store (limit <x> GiB: ok|OVER), <GiB> GiB prepare.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WRAPPER = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


def run(script: str, overrides: list[str]) -> tuple[float, float]:
    """Run ``script`` with ``overrides``; returns (peak RSS GiB, seconds)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(REPO / script), *overrides], capture_output=True, text=True, cwd=REPO
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{script} failed:\n{result.stderr[-3000:]}")
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak_rss_kib=")][-1]
    return int(peak.split("=")[1]) / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_h", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--limit-gib", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"model={args.model}",
            "model.weights=random",
            f"data.num_scans={args.scans}",
            f"data.image_size={args.size}",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            f"paths.root_dir={tmp}",
            f"paths.cache_dir={tmp}/cache",
        ]
        embed_gib, embed_s = run("prepare.py", overrides)
        train_gib, train_s = run("train.py", overrides)
    print(f"prepare.py (encoder fills the store): peak RSS {embed_gib:.2f} GiB, {embed_s:.0f} s")
    print(f"train.py  (prepared store, 1 epoch, tests, export): peak RSS {train_gib:.2f} GiB, {train_s:.0f} s")
    print(f"rerun: python bench/peak_memory.py --model {args.model} --scans {args.scans} --size {args.size}")
    verdict = "ok" if train_gib < args.limit_gib else "OVER"
    print(
        f"peak_rss: {train_gib:.2f} GiB train.py with a prepared store (limit {args.limit_gib:g} GiB: {verdict}), "
        f"{embed_gib:.2f} GiB prepare.py"
    )


if __name__ == "__main__":
    main()

"""Does a long run's memory stay flat? RSS of ``train.py`` at the end of every epoch, epoch 1 vs the last.

One ``train.py`` child (tiny model, synthetic scans, store prepared by its first phase) with the ``RssPerEpoch``
callback below added through Hydra (``+callbacks.rss=...``); it appends the process's RSS after each training
epoch to a JSON lines file, which this script prints.

    python bench/memory_flat.py [--epochs 10] [--scans 24] [--size 256] [--limit 1.05]

Last line: ``rss_growth: <last / epoch 1> (epoch 1 <MiB> MiB, epoch <n> <MiB> MiB; limit <x>: ok|OVER)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssPerEpoch(L.Callback):
    """Append ``{"epoch": e, "rss_mib": ...}`` to ``path`` after each training epoch."""

    def __init__(self, *, path: str) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"epoch": trainer.current_epoch + 1, "rss_mib": rss_mib()}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--scans", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=float, default=1.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "rss.jsonl"
        command = [
            sys.executable,
            str(REPO / "train.py"),
            f"paths.root_dir={tmp}",
            f"paths.cache_dir={tmp}/cache",
            f"data.num_scans={args.scans}",
            f"data.image_size={args.size}",
            f"trainer.max_epochs={args.epochs}",
            "trainer.accelerator=cpu",
            "+callbacks.rss._target_=bench.memory_flat.RssPerEpoch",
            f"+callbacks.rss.path={log}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if result.returncode != 0:
            sys.exit(f"train.py failed:\n{result.stderr[-3000:]}")
        rows = [json.loads(line) for line in log.read_text().splitlines()]
    for row in rows:
        print(f"epoch {row['epoch']:3d}: {row['rss_mib']:8.1f} MiB")
    first, last = rows[0], rows[-1]
    growth = last["rss_mib"] / first["rss_mib"]
    verdict = "ok" if growth <= args.limit else "OVER"
    print(f"command: python bench/memory_flat.py --epochs {args.epochs} --scans {args.scans} --size {args.size}")
    print(
        f"rss_growth: {growth:.3f} (epoch 1 {first['rss_mib']:.1f} MiB, epoch {last['epoch']} "
        f"{last['rss_mib']:.1f} MiB; limit {args.limit}: {verdict})"
    )


if __name__ == "__main__":
    main()

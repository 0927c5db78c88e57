"""Headline: one training epoch with the encoder run at every step (``cache=none``, the seed tutorial's way:
each item read from its files) vs the same epoch reading a prepared store (``cache=disk``: each item with its
embedding, no image decoded). Same process, same model, same scans, same step code.

    python bench/cache_speedup.py [--model vit_b] [--scans 4] [--size 1024] [--repeats 1] [--stamps K]

vit_b has random weights (same compute as Meta's). The cached epoch costs a decoder step per box prompt, so
the ratio falls with stamps per scan; ``--stamps 1`` keeps only one-stamp scans (the seed tutorial's data).
Last line: ``speedup: <x>x (...)``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import lightning as L
import torch
from harness import Timer, bare_trainer, make_tuner, training_scans

from samlit.data.datamodule import InstanceDataModule
from samlit.data.store import Store
from samlit.model.module import SamFineTuner
from samlit.run.prepare import prepare


def epoch_seconds(tuner: SamFineTuner, datamodule: InstanceDataModule, store: Store | None) -> float:
    datamodule.store = store
    timer = Timer()
    L.seed_everything(0, verbose=False)
    bare_trainer(callbacks=[timer]).fit(tuner, datamodule=datamodule)
    return timer.epochs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024, help="long side of the synthetic scans, px")
    parser.add_argument("--repeats", type=int, default=1, help="epochs of each kind, interleaved")
    parser.add_argument("--stamps", type=int, default=None, help="only scans with exactly this many stamps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = training_scans(Path(tmp, "data"), num_scans=args.scans, image_size=args.size, stamps=args.stamps)
        store = Store(mode="disk", root=Path(tmp, "cache", "store"))
        tuner = make_tuner(args.model)
        datamodule.store = store
        prepare(trainer=bare_trainer(), module=tuner, datamodule=datamodule)  # the prepare stage: a warm store
        none, cached = [], []
        for _ in range(args.repeats):
            none.append(epoch_seconds(tuner, datamodule, None))
            cached.append(epoch_seconds(tuner, datamodule, store))
        prompts = sum(len(group["boxes"]) for group in datamodule.train_dataloader().dataset)
    n_none, n_cached = statistics.median(none), statistics.median(cached)
    threads = torch.get_num_threads()
    print(f"model={args.model} scans={args.scans} ({prompts} box prompts) {args.size}px threads={threads}")
    print(f"epoch, cache=none (encoder every step): {', '.join(f'{s:.2f}' for s in none)} s")
    print(f"epoch, prepared store                  : {', '.join(f'{s:.2f}' for s in cached)} s")
    stamps = f" --stamps {args.stamps}" if args.stamps is not None else ""
    print(
        f"rerun: python bench/cache_speedup.py --model {args.model} --scans {args.scans} --size {args.size}{stamps} "
        f"--repeats {args.repeats}"
    )
    print(
        f"speedup: {n_none / n_cached:.1f}x (none {n_none:.2f} s/epoch, cached {n_cached:.2f} s/epoch, N={args.scans})"
    )


if __name__ == "__main__":
    main()

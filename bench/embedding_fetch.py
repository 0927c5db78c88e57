"""What the training thread spends getting a step's image embedding (issue 22), side by side in one process:

1. *read on the training thread* (before the prepare stage): the step reads its embedding's entry from the store
   on disk, decodes it and converts it to float32, then copies it to the device;
2. *in the batch* (now): a loader worker (``--workers``) has read the entry with its item; the step only copies the
   batch's tensor to the device (``SamFineTuner.image_embedding``), measured inside ``Trainer.fit``.

Both on the same prepared store of tiny-SAM crops (the embedding is 1 x 256 x 64 x 64 float16, 2 MiB, whatever
the model). Prints the median per step of each and their ratio.

    python bench/embedding_fetch.py [--scans 12] [--size 512] [--epochs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import bare_trainer, make_tuner, training_scans

from samlit.data.store import Store
from samlit.run.prepare import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = training_scans(
            Path(tmp, "data"),
            num_scans=args.scans,
            image_size=args.size,
            crop="box",
            num_workers=args.workers,
            store=Store(mode="disk", root=Path(tmp, "store"), device="cpu"),
        )
        tuner = make_tuner("tiny")
        prepare(trainer=bare_trainer(), module=tuner, datamodule=datamodule)
        keys = [per_view[0] for per_view in datamodule.entry_keys("train", train=True)]

        # 2. in the batch: time inside image_embedding during a fit with loader workers
        in_batch: list[float] = []
        fetch = tuner.image_embedding

        def timed(group: dict) -> torch.Tensor:
            start = time.perf_counter()
            embedding = fetch(group)
            in_batch.append(time.perf_counter() - start)
            return embedding

        tuner.image_embedding = timed
        bare_trainer(max_epochs=args.epochs).fit(tuner, datamodule=datamodule)

        # 1. read on the training thread, as the old embedding cache did: the first read of an entry in this store
        # object checks its SHA-256, later reads parse it only
        on_thread: list[float] = []
        store = Store(mode="disk", root=Path(tmp, "store"))
        for _ in range(args.epochs):
            for key in keys:
                start = time.perf_counter()
                embedding = store.read(key).features["embedding"].to(torch.float32, copy=True)
                embedding.to(tuner.device, non_blocking=True)
                on_thread.append(time.perf_counter() - start)
        # what is left in the step: the float16 -> float32 conversion of one embedding (on a GPU: a device op)
        half = store.read(keys[0]).features["embedding"]
        convert = []
        for _ in range(len(on_thread)):
            start = time.perf_counter()
            half.float()
            convert.append(time.perf_counter() - start)
    before, after = statistics.median(on_thread), statistics.median(in_batch)
    print(f"items={len(keys)} (tiny SAM crops, {args.size} px scans) workers={args.workers} epochs={args.epochs}")
    print(f"read on the training thread : {1000 * before:.3f} ms/step (median of {len(on_thread)})")
    print(f"in the batch (loader worker): {1000 * after:.3f} ms/step (median of {len(in_batch)})")
    print(f"  of which float16 -> float32: {1000 * statistics.median(convert):.3f} ms (the rest: the hand-over)")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"training thread per step, before / after: {before / after:.1f}x")


if __name__ == "__main__":
    main()

"""How fast the training loader hands out items, against how fast the decoder steps (issue 15).

With a prepared store a training step is one mask-decoder forward + backward per item. Read from its files, an
item decodes its scan and both ground-truth PNGs, resizes to SAM's 1024 frame and builds its targets; from the
store (``cache=disk``, filled by the prepare stage) it reads one safetensors file: the item and its embedding
(1 x 256 x 64 x 64 float16, 2 MiB). This measures:

1. items/s of the training loader (``data.crop`` as given, default ``box``) on real-size pages (``--size`` 2339
   px long side: the generator writes A4 pages, 1654 x 2339 at 200 dpi), ``num_workers`` 0 and 2: read from the
   files (no store: ``cache=none``) and from a prepared store (embedding included);
2. decoder steps/s: SAM's mask decoder (the same in tiny and vit_b/l/h) forward + Dice + backward + Adam on a
   cached-size embedding with one box prompt, on this machine;
3. the warm loader's time per item on the same pages shrunk 4x (``--size / 4``): how much of it grows with the
   pages' pixel count;
4. the marginal training epoch (the second one: ``Trainer.fit``, tiny SAM, warm embeddings and store, no
   workers) per item, real-size vs 4x smaller pages: the cost that matters, decoder steps included.

It prints each figure, the ratio loader rate / step rate (>= 1: the decoder never waits) and the command.

    python bench/loader_throughput.py [--scans 32] [--size 2339] [--crop box] [--epochs 20] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import Timer, bare_trainer, make_tuner

from samlit.data.datamodule import InstanceDataModule
from samlit.data.store import Store
from samlit.data.synthetic import SyntheticSource
from samlit.model.losses import DiceLoss
from samlit.model.sam import build_sam, decode_prompts
from samlit.run.prepare import prepare


def pages(root: Path, *, scans: int, size: int, crop: str, num_workers: int, store: bool) -> InstanceDataModule:
    """``scans`` generated pages of long side ``size`` (written once under ``root``), all in the train split; with
    ``store``, the store ``root/store<size>``, prepared (the tiny SAM's embeddings)."""
    datamodule = InstanceDataModule(
        source=SyntheticSource(root=root / f"px{size}", num_scans=scans, image_size=size),
        val_fraction=0.0,
        test_fraction=0.0,
        crop=crop,
        num_workers=num_workers,
        store=Store(mode="disk", root=root / f"store{size}") if store else None,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    if store:
        prepare(trainer=bare_trainer(), module=make_tuner("tiny"), datamodule=datamodule)
    return datamodule


def loader_rate(
    root: Path, *, scans: int, size: int, crop: str, workers: int, store: bool, epochs: int
) -> tuple[float, int, float]:
    """(items/s, items, seconds) over ``epochs`` passes of the training loader of ``scans`` generated pages, after
    one untimed pass (it starts the persistent workers)."""
    datamodule = pages(root, scans=scans, size=size, crop=crop, num_workers=workers, store=store)
    loader = datamodule.train_dataloader()
    for _ in loader:
        pass
    start, items = time.perf_counter(), 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch + 1)
        for batch in loader:
            items += len(batch)
    seconds = time.perf_counter() - start
    return items / seconds, items, seconds


def epoch_per_item(root: Path, *, scans: int, size: int, crop: str) -> float:
    """Seconds per item of the second training epoch over the pages ``loader_rate`` generated (prepared store)."""
    datamodule = pages(root, scans=scans, size=size, crop=crop, num_workers=0, store=True)
    tuner = make_tuner("tiny")
    timer = Timer()
    bare_trainer(max_epochs=2, callbacks=[timer]).fit(tuner, datamodule=datamodule)
    return timer.epochs[1] / len(datamodule.dataset("train", train=True))


def decoder_rate(*, steps: int) -> float:
    """Decoder steps/s: prompt encoder + mask decoder forward, Dice loss, backward, Adam, one box per step."""
    torch.manual_seed(0)
    sam = build_sam(model_type="tiny", weights="random")
    optimizer = torch.optim.Adam(sam.mask_decoder.parameters(), lr=1e-4)
    embedding = torch.randn(1, 256, 64, 64)
    box = torch.tensor([[200.0, 150.0, 700.0, 600.0]])
    target = (torch.rand(1, 256, 256) > 0.5).float()
    loss_fn = DiceLoss()
    times = []
    for _ in range(steps + 3):  # the first steps warm up the allocator
        start = time.perf_counter()
        logits, _ = decode_prompts(sam, embedding=embedding, boxes=box)  # (1, 256, 256)
        loss = loss_fn(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=32, help="generated pages (some carry no stamp)")
    parser.add_argument("--size", type=int, default=2339, help="long side of a page, px")
    parser.add_argument("--crop", default="box", choices=("box", "none"))
    parser.add_argument("--epochs", type=int, default=20, help="store epochs timed (files: a quarter of them)")
    parser.add_argument("--steps", type=int, default=30, help="decoder steps timed")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rates = {}
    sizes = (args.size, args.size // 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for store in (False, True):
            for workers in (0, 2):
                epochs = args.epochs if store else max(1, args.epochs // 4)
                rates[store, workers] = loader_rate(
                    root, scans=args.scans, size=args.size, crop=args.crop, workers=workers, store=store, epochs=epochs
                )
        small = loader_rate(
            root, scans=args.scans, size=args.size // 4, crop=args.crop, workers=0, store=True, epochs=args.epochs
        )
        epochs = {size: epoch_per_item(root, scans=args.scans, size=size, crop=args.crop) for size in sizes}
    steps = decoder_rate(steps=args.steps)
    for (store, workers), (rate, items, seconds) in rates.items():
        where = "prepared store" if store else "files (no store)"
        print(f"loader, {args.size} px pages, crop={args.crop}, {where:>16}, num_workers={workers}: {items} items in "
              f"{seconds:.2f} s = {rate:.1f} items/s")  # fmt: skip
    print(f"loader, {args.size // 4} px pages (4x smaller), prepared store, num_workers=0: {small[1]} items in "
          f"{small[2]:.2f} s = {small[0]:.1f} items/s")  # fmt: skip
    print(f"decoder step (fwd + Dice + bwd + Adam, 1 box): {steps:.1f} steps/s ({1000 / steps:.1f} ms)")
    for store in (False, True):
        where = "prepared store" if store else "files (no store)"
        ratios = ", ".join(f"{rates[store, w][0] / steps:.2f} ({w} workers)" for w in (0, 2))
        print(f"loader rate / step rate, {where}: {ratios}")
    print(f"warm store vs files, 2 workers: {rates[True, 2][0] / rates[False, 2][0]:.1f}x the items/s")
    per_item = (rates[True, 0][2] / rates[True, 0][1]) / (small[2] / small[1])
    print(f"time per item, real-size vs 4x smaller pages (prepared store, 0 workers): {per_item:.2f}x (goal <= 1.3x)")
    for size, seconds in epochs.items():
        print(f"marginal training epoch, {size} px pages, prepared store: {1000 * seconds:.1f} ms per item")
    print(
        f"marginal epoch time, real-size vs 4x smaller pages: {epochs[sizes[0]] / epochs[sizes[1]]:.2f}x (goal <= 1.3x)"
    )
    print(f"goal: >= 400 items/s with 2 workers (prepared store); reached {rates[True, 2][0]:.1f}")
    print(f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()

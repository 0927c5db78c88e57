"""Issue 15's baseline: how fast the training loader hands out items, against how fast the decoder steps.

With a warm embedding cache a training step is one mask-decoder forward + backward per item, yet each item still
decodes its scan and both ground-truth PNGs, resizes to SAM's 1024 frame and builds its targets. This measures:

1. items/s of one epoch of the training loader (``data.crop`` as given, default ``box``) on real-size pages
   (``--size`` 2339 px long side: the generator writes A4 pages, 1654 x 2339 at 200 dpi), ``num_workers`` 0 and 2;
2. decoder steps/s: SAM's mask decoder (the same in tiny and vit_b/l/h) forward + Dice + backward + Adam on a
   cached-size embedding with one box prompt, on this machine;
3. the loader's time per item on the same pages shrunk 4x (``--size / 4``): how much of it grows with pixel count.

It prints each figure, the ratio loader rate / step rate (>= 1: the decoder never waits) and the command.

    python bench/loader_throughput.py [--scans 8] [--size 2339] [--crop box] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from samlit.data.datamodule import SyntheticStaverDataModule
from samlit.model.losses import DiceLoss
from samlit.model.sam import build_sam, decode_prompts


def loader_rate(root: Path, *, scans: int, size: int, crop: str, workers: int) -> tuple[float, int, float]:
    """(items/s, items, seconds) of the second pass over the training loader of ``scans`` generated pages (the
    first starts the persistent workers)."""
    datamodule = SyntheticStaverDataModule(
        root=root / f"px{size}",
        num_scans=scans,
        image_size=size,
        val_fraction=0.0,
        test_fraction=0.0,
        crop=crop,
        num_workers=workers,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for _ in loader:
        pass
    start, items = time.perf_counter(), 0
    for batch in loader:
        items += len(batch)
    seconds = time.perf_counter() - start
    return items / seconds, items, seconds


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
    parser.add_argument("--scans", type=int, default=8, help="generated pages (some carry no stamp)")
    parser.add_argument("--size", type=int, default=2339, help="long side of a page, px")
    parser.add_argument("--crop", default="box", choices=("box", "none"))
    parser.add_argument("--steps", type=int, default=30, help="decoder steps timed")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rates = {w: loader_rate(root, scans=args.scans, size=args.size, crop=args.crop, workers=w) for w in (0, 2)}
        small = loader_rate(root, scans=args.scans, size=args.size // 4, crop=args.crop, workers=0)
    steps = decoder_rate(steps=args.steps)
    for workers, (rate, items, seconds) in rates.items():
        print(f"loader, {args.size} px pages, crop={args.crop}, num_workers={workers}: {items} items in "
              f"{seconds:.2f} s = {rate:.1f} items/s")  # fmt: skip
    print(f"loader, {args.size // 4} px pages (4x smaller), num_workers=0: {small[1]} items in {small[2]:.2f} s")
    print(f"decoder step (fwd + Dice + bwd + Adam, 1 box): {steps:.1f} steps/s ({1000 / steps:.1f} ms)")
    print(f"loader rate / step rate: {rates[0][0] / steps:.3f} (0 workers), {rates[2][0] / steps:.3f} (2 workers)")
    per_item = (rates[0][2] / rates[0][1]) / (small[2] / small[1])
    print(f"time per item, real-size vs 4x smaller pages (0 workers): {per_item:.2f}x (goal <= 1.3x)")
    print(f"goal: >= 400 items/s with 2 workers; reached {rates[2][0]:.1f}")
    print(f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()

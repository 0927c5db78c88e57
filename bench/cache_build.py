"""What the prepare stage costs beyond the encoder itself: ``prepare`` (Lightning predict loop, reading and resizing
scans, building targets, hashing pixels, fp16 + checksum + atomic write of each entry) on a cold store vs the bare
``image_encoder`` forward on the same images, already in memory. Same process, interleaved.

    python bench/cache_build.py [--model vit_b] [--scans 4] [--size 1024] [--repeats 1]

Last line: ``build_overhead: <build time / bare encoder time>``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from harness import bare_trainer, make_tuner, training_scans

from samlit.data.dataset import collate_samples
from samlit.data.store import Store
from samlit.model.sam import encode_image
from samlit.run.prepare import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024, help="long side of the synthetic scans, px")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = training_scans(Path(tmp, "data"), num_scans=args.scans, image_size=args.size)
        tuner = make_tuner(args.model)
        dataset = datamodule.dataset("train", train=False)  # no store: every item made from its files, with its image
        images = [group["image"] for group in collate_samples([dataset[i] for i in range(len(dataset))])]
        sam = tuner.sam
        build, bare = [], []
        for repeat in range(args.repeats):
            datamodule.store = Store(mode="disk", root=Path(tmp, f"store{repeat}"))  # cold
            start = time.perf_counter()
            stats = prepare(trainer=bare_trainer(), module=tuner, datamodule=datamodule)
            build.append(time.perf_counter() - start)
            assert stats.encoded == len(images)
            datamodule.store = None
            start = time.perf_counter()
            with torch.no_grad():
                for image in images:
                    encode_image(sam, image)
            bare.append(time.perf_counter() - start)
        written = stats.bytes_written
    b, e = statistics.median(build), statistics.median(bare)
    print(f"model={args.model} images={len(images)} {args.size}px threads={torch.get_num_threads()}")
    print(f"prepare (cold store)  : {', '.join(f'{s:.2f}' for s in build)} s  ({len(images) / b:.3f} images/s)")
    print(f"bare encoder forward  : {', '.join(f'{s:.2f}' for s in bare)} s  ({len(images) / e:.3f} images/s)")
    print(f"written per image     : {written / len(images) / 2**20:.2f} MiB")
    print(f"rerun: python bench/cache_build.py --model {args.model} --scans {args.scans} --size {args.size}")
    print(f"build_overhead: {b / e:.3f}")


if __name__ == "__main__":
    main()

"""Why embeddings are computed once: time a training step with the cached embedding vs recomputing it
every step (the seed tutorial's way), side by side in one run, on the same data and model.

    python bench/embedding_cache.py [--model tiny|vit_b] [--steps 8] [--size 512]

Prints per-step medians and their ratio. vit_b uses random weights (same compute as the real model).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from samlit.data.datamodule import StampDataset
from samlit.data.staver import find_scans
from samlit.data.synthetic import generate_synthetic_staver
from samlit.losses import DiceLoss
from samlit.module import SamFineTuner
from samlit.sam import build_sam


def step_time(module: SamFineTuner, group: dict, optimizer: torch.optim.Optimizer, *, cached: bool) -> float:
    if not cached:
        module.embeddings = type(module.embeddings)()  # forget: the encoder runs again
    start = time.perf_counter()
    loss = module.model_step([group], module.train_metrics)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="long side of the synthetic scans")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_synthetic_staver(root=Path(tmp), num_scans=6, image_size=args.size, seed=0)
        dataset = StampDataset(find_scans(root))
        group = next(g for g in (dataset[i] for i in range(len(dataset))) if len(g["boxes"]) > 0)
    module = SamFineTuner(
        sam=build_sam(model_type=args.model, weights="random"),
        loss=DiceLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
    )
    module.train()
    optimizer = module.configure_optimizers()
    step_time(module, group, optimizer, cached=True)  # warm-up, fills the cache
    cached, recomputed = [], []
    for _ in range(args.steps):  # interleaved so machine noise hits both alike
        cached.append(step_time(module, group, optimizer, cached=True))
        recomputed.append(step_time(module, group, optimizer, cached=False))
    c, r = statistics.median(cached), statistics.median(recomputed)
    print(f"model={args.model} prompts/step={len(group['boxes'])} threads={torch.get_num_threads()} steps={args.steps}")
    print(f"step with cached embedding : {c * 1000:8.1f} ms (median)")
    print(f"step recomputing embedding : {r * 1000:8.1f} ms (median)")
    print(f"recompute / cached         : {r / c:8.2f}x")
    print(f"rerun: python bench/embedding_cache.py --model {args.model} --steps {args.steps} --size {args.size}")


if __name__ == "__main__":
    main()

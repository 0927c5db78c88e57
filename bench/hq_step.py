"""The cost of an HQ training step vs a plain decoder step, on prepared features (no encoder in either).

One step = ``SamFineTuner.model_step`` (prompt encoder, mask decoder, Dice + IoU-head loss) on a batch of items, one
box each (crop mode), backward and an Adam step, as ``trainer.fit`` runs it minus Lightning's bookkeeping. The
three modes (plain; HQ training the HQ parts; HQ training the whole decoder) are built in one process and their
steps alternate, so the machine's noise falls on all alike; the ratios are what to read. Memory: what a step keeps
beyond the model, counted exactly whatever the device: the tensors autograd saves for the backward pass (the
activations, ``torch.autograd.graph.saved_tensors_hooks``) and the gradients + Adam state of what trains (3 x 4
bytes per trainable parameter). On a GPU the peak of a step is about their sum (``bench/gpu_check.sh`` measures
``torch.cuda.max_memory_allocated``).

    python bench/hq_step.py [--model vit_b] [--batch 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from samlit.model.losses import DiceLoss, SamLoss
from samlit.model.module import SamFineTuner
from samlit.model.sam import ENCODERS, build_sam

MODES = {"plain": {}, "hq": {"hq": True, "hq_train": "hq"}, "hq+decoder": {"hq": True, "hq_train": "hq+decoder"}}


def tuner(model: str, mode: str) -> tuple[SamFineTuner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = SamFineTuner(
        sam=build_sam(model_type=model, **MODES[mode]),
        loss=SamLoss(mask=DiceLoss()),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
        decoder_batching="per_image",
    )
    module.train()
    return module, module.configure_optimizers()


def batch(model: str, size: int, *, hq: bool) -> list[dict]:
    """``size`` prepared items in crop mode: one box, its target, the embedding (and the early ViT feature)."""
    generator = torch.Generator().manual_seed(1)
    groups = []
    for i in range(size):
        target = torch.zeros(1, 256, 256)
        target[:, 60:200, 40:220] = (torch.rand(1, 140, 180, generator=generator) > 0.7).float()  # stroke-like ink
        group = {
            "key": str(i),
            "boxes": torch.tensor([[160.0, 240.0, 880.0, 800.0]]),
            "low_res_targets": target,
            "embedding": torch.randn(1, 256, 64, 64, generator=generator).half(),
        }
        if hq:
            width = ENCODERS[model].embed_dim
            group["interm_embedding"] = torch.randn(1, 64, 64, width, generator=generator).half()
        groups.append(group)
    return groups


def step(module: SamFineTuner, optimizer: torch.optim.Optimizer, groups: list[dict]) -> float:
    start = time.perf_counter()
    terms, _ = module.model_step(groups, "train")
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    return time.perf_counter() - start


def saved_bytes(module: SamFineTuner, groups: list[dict]) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one step (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        terms, _ = module.model_step(groups, "train")
    terms["loss"].backward()
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=sorted(ENCODERS))
    parser.add_argument("--batch", type=int, default=4, help="items per step (one box each)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per mode (after one warm-up each)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="DiceScore metric currently defaults")
    built = {mode: tuner(args.model, mode) for mode in MODES}
    groups = {mode: batch(args.model, args.batch, hq=mode != "plain") for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.steps + 1):
        for mode in MODES:
            elapsed = step(*built[mode], groups[mode])
            if round_:  # the first round warms up
                times[mode].append(elapsed)
    plain = statistics.median(times["plain"])
    print(f"{args.model}, {args.batch} items x 1 box per step, {args.steps} steps per mode, interleaved")
    print("mode | trainable params | step (median) | vs plain | saved for backward | grads + Adam state")
    print("---|---|---|---|---|---")
    for mode, (module, _) in built.items():
        trainable = sum(p.numel() for p in module.trainable_parameters())
        median = statistics.median(times[mode])
        saved = saved_bytes(module, groups[mode])
        print(
            f"{mode} | {trainable / 1e6:.2f} M | {median * 1000:.0f} ms | {median / plain:.2f}x | "
            f"{saved / 2**20:.0f} MiB | {trainable * 12 / 2**20:.0f} MiB"
        )
    print(f"command: python bench/hq_step.py --model {args.model} --batch {args.batch} --steps {args.steps}")


if __name__ == "__main__":
    main()

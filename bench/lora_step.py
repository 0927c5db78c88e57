"""One training step with encoder adapters (``peft=encoder_lora``: LoRA on every block's qkv, the decoder training as
well), with and without gradient checkpointing of the encoder blocks (``peft.checkpointing``): step time and peak
memory. Each setting runs in its own process (a fresh peak), interleaved over ``--repeats`` rounds; a step is one
image through the encoder with gradients, one box through the decoder, Dice loss, backward, Adam.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the steps; on a CPU the process's peak resident set
(``ru_maxrss``) less its resident set before the first step (the model, its weights and the optimizer's state).

    python bench/lora_step.py [--model vit_b] [--steps 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from harness import resident_bytes

from samlit.model.lora import LoraSpec, apply_lora
from samlit.model.losses import DiceLoss
from samlit.model.sam import ENCODERS, build_sam, decode_prompts, encode_features


def one_setting(model: str, checkpointing: bool, steps: int) -> dict:
    """Build ``model`` (random weights) with encoder adapters, time ``steps`` training steps after a warm-up."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    sam = build_sam(model_type=model).to(device)
    apply_lora(sam, LoraSpec(encoder_target_modules=("qkv",), checkpointing=checkpointing))
    sam.image_encoder.train()
    sam.mask_decoder.train()
    optimizer = torch.optim.Adam([p for p in sam.parameters() if p.requires_grad], lr=1e-4)
    image = torch.randint(0, 256, (3, 1024, 1024), dtype=torch.uint8)
    box = torch.tensor([[200.0, 240.0, 700.0, 650.0]], device=device)
    target = torch.zeros(1, 256, 256, device=device)
    target[:, 60:160, 50:175] = 1
    loss_fn = DiceLoss()

    def step() -> None:
        optimizer.zero_grad()
        embedding = encode_features(sam, image)["embedding"]
        logits, _ = decode_prompts(sam, embedding=embedding, boxes=box)
        loss_fn(logits, target).backward()
        optimizer.step()

    before = resident_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    times = []
    for _ in range(steps + 1):  # the first step warms up (and allocates the optimizer's state)
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"step": statistics.median(times[1:]), "peak": peak, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=sorted(ENCODERS))
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="processes per setting, interleaved")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_setting(args.model, args.one == "true", args.steps)))
        return
    results: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeats):
        for checkpointing in (False, True):
            command = [sys.executable, __file__, "--model", args.model, "--steps", str(args.steps)]
            out = subprocess.run(
                [*command, "--one", str(checkpointing).lower()], capture_output=True, text=True, check=True
            )
            results[checkpointing].append(json.loads(out.stdout.strip().splitlines()[-1]))
    device = results[False][0]["device"]
    print(f"{args.model}, encoder LoRA (qkv, rank 4) + decoder, one 1024 px image per step, {device}")
    print("peft.checkpointing | step (median) | peak memory of the step")
    print("---|---|---")
    base = statistics.median(r["step"] for r in results[False])
    base_peak = statistics.median(r["peak"] for r in results[False])
    for checkpointing, rows in results.items():
        step, peak = statistics.median(r["step"] for r in rows), statistics.median(r["peak"] for r in rows)
        print(
            f"{str(checkpointing).lower()} | {step:.2f} s ({step / base:.2f}x) | {peak / 2**30:.2f} GiB "
            f"({peak / base_peak:.2f}x)"
        )
    print(f"command: python bench/lora_step.py --model {args.model} --steps {args.steps} --repeats {args.repeats}")


if __name__ == "__main__":
    main()

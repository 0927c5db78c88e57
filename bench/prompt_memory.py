"""Peak memory of one training step against the instances per image (page frame, ``data.crop=none``): one image with
N box prompts through the tiny model's decoder, Dice + IoU-head loss, backward, for ``module.max_prompts_per_call``
= null (every prompt in one decoder call, as before the limit) and the default 16 (parts of 16, each checkpointed).

Each setting runs in its own process, so its peak is its own: the process's peak resident set (``ru_maxrss``) less
its resident set before the step (the model built, the inputs made). A setting expected to need more memory than
``--budget-gib`` is skipped and said to be.

    python bench/prompt_memory.py [--instances 60,300] [--budget-gib 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from harness import resident_bytes

MB_PER_PROMPT = 110  # one call's measured cost per prompt with gradients (tiny, CPU): what the skip rule assumes


def one_step(instances: int, limit: int | None) -> dict:
    """One training step of ``SamFineTuner`` (tiny, random weights) on one image with ``instances`` box prompts."""
    from samlit.model.losses import DiceLoss, SamLoss
    from samlit.model.module import SamFineTuner
    from samlit.model.sam import build_sam

    torch.manual_seed(0)
    module = SamFineTuner(
        sam=build_sam(model_type="tiny"),
        loss=SamLoss(mask=DiceLoss()),
        optimizer=torch.optim.Adam,
        max_prompts_per_call=limit,
    )
    module.train()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 900, (instances, 2), generator=generator).float()
    boxes = torch.cat([x0, x0 + 60], dim=1)
    targets = torch.zeros(instances, 256, 256)
    for i, (x, y) in enumerate((x0 / 4).long().tolist()):
        targets[i, y : y + 15, x : x + 15] = 1
    group = {
        "key": "page",
        "boxes": boxes,
        "low_res_targets": targets,
        "input_size": (1024, 1024),
        "original_size": (1024, 1024),
        "embedding": torch.randn(1, 256, 64, 64, generator=generator),
    }
    before = resident_bytes()
    start = time.perf_counter()
    terms, _ = module.model_step([group], "train")
    terms["loss"].backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak": peak, "seconds": seconds, "loss": float(terms["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="60,300", help="prompts on the one image")
    parser.add_argument("--budget-gib", type=float, default=16.0, help="skip a setting expected to need more")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: "<instances>,<limit or null>"
    args = parser.parse_args()
    if args.one:
        count, limit = args.one.split(",")
        print(json.dumps(one_step(int(count), None if limit == "null" else int(limit))))
        return
    print("instances | max_prompts_per_call | peak memory of the step | step | loss")
    print("---|---|---|---|---")
    for count in (int(n) for n in args.instances.split(",")):
        for limit in ("null", "16"):
            if limit == "null" and count * MB_PER_PROMPT / 1024 > args.budget_gib:
                expected = count * MB_PER_PROMPT / 1024
                print(f"{count} | {limit} | not run: ~{expected:.0f} GiB expected, over --budget-gib | | ")
                continue
            command = [sys.executable, __file__, "--one", f"{count},{limit}"]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{count} | {limit} | {result['peak'] / 2**30:.2f} GiB | {result['seconds']:.1f} s | "
                f"{result['loss']:.6f}"
            )
    print(f"command: python bench/prompt_memory.py --instances {args.instances} --budget-gib {args.budget_gib:g}")


if __name__ == "__main__":
    main()

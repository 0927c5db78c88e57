"""The cost of a corrective-click training step (``module.corrective_clicks=K``) vs a box-only step, on prepared
features, and of the encoder pass a click costs where the embedding is not cached (micro-sam, SAM 2's trainer).

One step = ``SamFineTuner.model_step`` (K + 1 decoder passes, each click drawn from the previous pass's error) on a
batch of items, one box each (crop mode), backward and an Adam step (``bench/hq_step.py``'s step). The K settings
are built in one process and their steps alternate, so the machine's noise falls on all alike; the ratios are what
to read. The encoder row is one ``encode_features`` call on a 1024 x 1024 frame, no gradient.

    python bench/click_step.py [--model tiny|vit_b] [--clicks 0,1,3,7] [--batch 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from hq_step import batch, step

from samlit.model.losses import DiceLoss, SamLoss
from samlit.model.module import SamFineTuner
from samlit.model.sam import ENCODERS, build_sam, encode_features


def tuner(model: str, clicks: int) -> tuple[SamFineTuner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = SamFineTuner(
        sam=build_sam(model_type=model),
        loss=SamLoss(mask=DiceLoss()),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-4),
        decoder_batching="per_image",
        corrective_clicks=clicks,
    )
    module.train()
    return module, module.configure_optimizers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=sorted(ENCODERS))
    parser.add_argument("--clicks", default="0,1,3,7", help="the K of module.corrective_clicks to compare")
    parser.add_argument("--batch", type=int, default=4, help="items per step (one box each)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting (after one warm-up each)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="DiceScore metric currently defaults")
    settings = [int(k) for k in args.clicks.split(",")]
    built = {k: tuner(args.model, k) for k in settings}
    groups = [{**g, "input_size": (1024, 1024)} for g in batch(args.model, args.batch, hq=False)]
    times: dict[int, list[float]] = {k: [] for k in settings}
    encoder: list[float] = []
    image = torch.randint(0, 255, (3, 1024, 1024), dtype=torch.uint8)
    for round_ in range(args.steps + 1):
        for k in settings:
            elapsed = step(*built[k], groups)
            if round_:  # the first round warms up
                times[k].append(elapsed)
        start = time.perf_counter()
        with torch.no_grad():
            encode_features(built[settings[0]][0].sam, image)
        if round_:
            encoder.append(time.perf_counter() - start)
    base = statistics.median(times[settings[0]])
    encode = statistics.median(encoder)
    print(f"{args.model}, {args.batch} items x 1 box per step, {args.steps} steps per setting, interleaved")
    print(f"K (module.corrective_clicks) | decoder passes | step (median) | vs K={settings[0]} | per pass")
    print("---|---|---|---|---")
    for k in settings:
        median = statistics.median(times[k])
        print(f"{k} | {k + 1} | {median * 1000:.0f} ms | {median / base:.2f}x | {median / (k + 1) * 1000:.0f} ms")
    print(
        f"one encoder pass (1024 x 1024, no grad): {encode * 1000:.0f} ms = {encode / base:.2f}x a K={settings[0]} "
        f"step; a batch of {args.batch} re-encoded every step, as trainers without cached embeddings do, adds "
        f"{args.batch * encode * 1000:.0f} ms"
    )
    print(
        f"command: python bench/click_step.py --model {args.model} --clicks {args.clicks} --batch {args.batch} "
        f"--steps {args.steps}"
    )


if __name__ == "__main__":
    main()

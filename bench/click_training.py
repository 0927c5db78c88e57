"""Box-only training vs corrective-click training (``module.corrective_clicks=K``), trained the same way (same
data, seed and epochs; each run generates its data and fills a fresh store) and each evaluated with ``clicks=N``:
the test split's mean IoU after 0, 1, 3, 5 (.., N) clicks and NoC@85 / NoC@90, zero-shot and fine-tuned, the
median training step, the mean training epoch and the wall time of each ``train.py`` run.

    python bench/click_training.py [--train-clicks 0,3] [--clicks 5] [train.py overrides ...]
    python bench/click_training.py                                            # the default data (48 scans, 512 px)
    python bench/click_training.py data.image_size=2339 data.num_scans=16      # A4 at 200 dpi
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-clicks", default="0,3", help="the K of module.corrective_clicks to train with")
    parser.add_argument("--clicks", type=int, default=5, help="N of the N-click evaluation (clicks=N)")
    args, overrides = parser.parse_known_args()
    settings = [int(k) for k in args.train_clicks.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in settings:
            root = Path(tmp) / str(k)
            root.mkdir()
            run = train_run(root, *overrides, f"module.corrective_clicks={k}", f"clicks={args.clicks}")
            rows.append((k, *run))
    shown = sorted({k for k in (0, 1, 3, 5, args.clicks) if k <= args.clicks})
    head = " | ".join(f"mIoU@{k}" for k in shown)
    print(f"training | tested | {head} | NoC@85 | NoC@90 | step (median) | epoch (mean) | wall")
    print("---|---|" + "---|" * len(shown) + "---|---|---|---|---")
    base_step = base_epoch = None
    for k, metrics, wall, steps, epochs in rows:
        step, epoch = statistics.median(steps[1:] or steps), statistics.mean(epochs)
        base_step, base_epoch = base_step or step, base_epoch or epoch
        for stage in ("zero_shot", "fine_tuned") if k == rows[0][0] else ("fine_tuned",):
            clicks = metrics[stage]["clicks"]
            curve = " | ".join(f"{clicks['miou'][c]:.4f}" for c in shown)
            nocs = " | ".join(
                f"{clicks[f'noc{level}']:.2f} ({clicks[f'not_reached_{level}']}/{clicks['n_masks']})"
                for level in (85, 90)
            )
            training = "-" if stage == "zero_shot" else ("box only" if k == 0 else f"K={k} clicks")
            timing = (
                "| | |"
                if stage == "zero_shot"
                else f"| {step * 1000:.0f} ms ({step / base_step:.2f}x) | {epoch:.1f} s ({epoch / base_epoch:.2f}x) "
                f"| {wall:.0f} s"
            )
            print(f"{training} | {stage.replace('_', '-')} | {curve} | {nocs} {timing}")
    first = rows[0][1]
    print(
        f"test masks: {first['fine_tuned']['n_masks']}; epochs: {first['epochs']}; NoC (n/M): n of M masks never "
        f"reached the level in {args.clicks} clicks (counted as {args.clicks}); ceiling "
        f"{first['frame']['ceiling'][first['frame']['crop']]['iou']:.4f}"
    )
    print(
        f"command: python bench/click_training.py --train-clicks {args.train_clicks} --clicks {args.clicks} "
        f"{' '.join(overrides)}".rstrip()
    )


if __name__ == "__main__":
    main()

"""The mask decoder alone vs LoRA adapters, trained the same way: ``train.py`` with ``peft=none`` (the decoder
trains), ``peft=decoder_lora``, ``peft=encoder_lora`` (+ the decoder) and ``peft=lora`` (both adapters, the decoder's
own weights frozen); same data, seed and epochs, each run in a fresh root (it generates its data and fills a fresh
store, so the wall times hold the same work besides the mode). One table: test IoU (zero-shot -> fine-tuned),
trainable parameters, the median training step and mean training epoch (``harness.StepTimes`` inside the run), and
the wall time.

    python bench/lora_modes.py [--modes none,decoder_lora,encoder_lora,lora] [train.py overrides ...]
    python bench/lora_modes.py                     # the default data (48 scans of 512 px, box crops, 12 epochs)
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from harness import chosen_modes, train_run

MODES = ("none", "decoder_lora", "encoder_lora", "lora")


def main() -> None:
    chosen, overrides = chosen_modes(__doc__, MODES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            root = Path(tmp) / name
            root.mkdir()
            metrics, wall, steps, epochs = train_run(root, *overrides, f"peft={name}")
            rows.append((name, metrics, wall, statistics.median(steps[1:] or steps), statistics.mean(epochs)))
    print("peft | test IoU | trainable params (of them LoRA) | step (median) | epoch (mean) | wall")
    print("---|---|---|---|---|---")
    base_step, base_epoch = rows[0][3], rows[0][4]
    for name, metrics, wall, step, epoch in rows:
        parts = metrics["trained"]["parameters"].values()
        trainable, adapters = sum(p["trainable"] for p in parts), sum(p["adapters"] for p in parts)
        iou = f"{metrics['zero_shot']['iou']:.4f} -> {metrics['fine_tuned']['iou']:.4f}"
        print(
            f"{name} | {iou} | {trainable:,} ({adapters:,}) | {step * 1000:.0f} ms ({step / base_step:.2f}x) | "
            f"{epoch:.1f} s ({epoch / base_epoch:.2f}x) | {wall:.0f} s"
        )
    first = rows[0][1]
    crop = first["frame"]["crop"]
    print(
        f"test masks: {first['fine_tuned']['n_masks']}; epochs: {first['epochs']}; ceiling "
        f"{first['frame']['ceiling'][crop]['iou']:.4f} ({crop} frame)"
    )
    modes = "" if chosen == list(MODES) else f"--modes={','.join(chosen)} "
    print(f"command: python bench/lora_modes.py {modes}{' '.join(overrides)}".rstrip())


if __name__ == "__main__":
    main()

"""What a training step costs beyond the mask decoder itself, and whether batching images helps.

1. ``SamFineTuner``'s training step under ``Trainer.fit`` (the batch's embedding to the device, loss + IoU-head
   term, metrics, logging,
   gradient clipping, Adam) vs a bare loop: prompt encoder, ``mask_decoder`` forward, Dice loss, backward,
   Adam, on the same cached embeddings and boxes. Last line: ``step_overhead: <lightning / bare>``.
2. Several images per step: the stock decoder takes one image embedding and repeats it per prompt
   (``module.decoder_batching=per_image``); the alternative feeds every prompt of ``--batch`` images to one
   decoder call (``batched``: ``samlit.model.sam.decode_prompt_batch``). Time per image, both ways: what
   ``decoder_batching=auto`` picks per device rests on it.

The decoder is the same in tiny and vit_b/l/h (256-wide, 2-layer two-way transformer), so ``--model tiny``
(default) measures the real decoder; the encoder only fills the cache.

    python bench/decoder_step.py [--model tiny] [--scans 4] [--size 512] [--epochs 5] [--batch 4] [--device cpu]
                                 [--crop none|box] [--workers 0]

The fit reads a prepared store (``cache=disk``'s: each item with its embedding), as ``train.py`` does.
``--resident cpu|cuda`` is ``cache.device``: ``cuda`` keeps every embedding on the GPU (a step is the decoder alone).
``bench/gpu_check.sh`` runs it on a GPU (vit_b, 1654 x 2339 pages, page and crop frames, both ways).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from harness import Timer, bare_trainer, make_tuner, training_scans

from samlit.data.store import Store
from samlit.model.losses import DiceLoss
from samlit.model.sam import decode_prompt_batch
from samlit.run.prepare import prepare


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5, help="Lightning epochs; the bare loop runs as many steps")
    parser.add_argument("--batch", type=int, default=4, help="images per step in part 2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--crop", default="none", choices=["none", "box"], help="data.crop: pages or stamp crops")
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers of the Lightning fit")
    parser.add_argument("--resident", default="cpu", choices=["cpu", "cuda"], help="cache.device of the fit")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = training_scans(
            Path(tmp, "data"),
            num_scans=args.scans,
            image_size=args.size,
            crop=args.crop,
            num_workers=args.workers,
            store=Store(
                mode="disk", root=Path(tmp, "store"), device=args.resident
            ),  # cache=disk's: the fit reads prepared items
        )
        tuner = make_tuner(args.model)
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        prepare(trainer=bare_trainer(accelerator=accelerator), module=tuner, datamodule=datamodule)
        items = len(datamodule.dataset("train", train=True))

        # 1a. through Lightning
        timer = Timer()
        trainer = bare_trainer(max_epochs=args.epochs, callbacks=[timer], accelerator=accelerator)
        trainer.fit(tuner, datamodule=datamodule)
        lightning_steps = timer.steps[1:]  # the first step allocates
        epoch_per_step = [t / items for t in timer.epochs[1:]]

        # 1b. bare decoder loop on the same embeddings and boxes
        sam = tuner.sam.to(device)
        groups = [group for group in datamodule.train_dataloader().dataset]
        embeddings = [g["embedding"].to(device).float() for g in groups]
        image_pe = sam.prompt_encoder.get_dense_pe()
        with torch.no_grad():
            prompts = [sam.prompt_encoder(points=None, boxes=g["boxes"].to(device), masks=None) for g in groups]
        targets = [g["low_res_targets"].to(device) for g in groups]
        decoder, loss_fn = sam.mask_decoder.train(), DiceLoss()
        optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        def bare_step(indices: list[int], *, batched: bool) -> float:
            sync()
            start = time.perf_counter()
            if batched:
                embedding = torch.cat([embeddings[i].expand(len(targets[i]), -1, -1, -1) for i in indices])
                sparse = torch.cat([prompts[i][0] for i in indices])
                dense = torch.cat([prompts[i][1] for i in indices])
                logits, _ = decode_prompt_batch(sam, embeddings=embedding, sparse=sparse, dense=dense)
                loss = loss_fn(logits, torch.cat([targets[i] for i in indices]))
            else:
                loss = 0
                for i in indices:
                    logits, _ = decoder(embeddings[i], image_pe, *prompts[i], multimask_output=False)
                    loss = loss + loss_fn(logits[:, 0], targets[i]) / len(indices)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()
            return time.perf_counter() - start

        bare_step([0], batched=False)
        bare = [bare_step([i % items], batched=False) for i in range(len(lightning_steps) + 1)][1:]

        # 2. B images per step: one decoder call per image vs one call for all prompts (interleaved)
        batch = [i % items for i in range(args.batch)]
        per_image, one_call = [], []
        for _ in range(args.epochs):
            per_image.append(bare_step(batch, batched=False) / args.batch)
            one_call.append(bare_step(batch, batched=True) / args.batch)
    num_prompts = sum(len(t) for t in targets)
    lightning_ms, bare_ms = median_ms(lightning_steps), median_ms(bare)
    print(
        f"model={args.model} device={device} scans={args.scans} crop={args.crop} items={items} "
        f"embeddings={'on the device' if tuner.resident else 'read by the loader'} "
        f"prompts/item={num_prompts / items:.2f} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"Lightning training step (hooks)          : {lightning_ms:8.1f} ms/step (median of {len(lightning_steps)})")
    print(f"  epoch time / steps (+ data loading)    : {median_ms(epoch_per_step):8.1f} ms/step")
    print(f"bare decoder fwd+bwd+Adam                : {bare_ms:8.1f} ms/step (median of {len(bare)})")
    print(f"{args.batch} images/step, a decoder call per image  : {median_ms(per_image):8.1f} ms/image")
    print(f"{args.batch} images/step, one batched call          : {median_ms(one_call):8.1f} ms/image")
    print(f"batched / per-image                      : {median_ms(one_call) / median_ms(per_image):8.3f}")
    print(f"decoder share of a training step (bare / epoch per step): {bare_ms / median_ms(epoch_per_step):.3f}")
    print(f"training steps/s (epoch time / steps): {1000 / median_ms(epoch_per_step):.1f}")
    print(
        f"rerun: python bench/decoder_step.py --model {args.model} --scans {args.scans} --size {args.size} "
        f"--epochs {args.epochs} --batch {args.batch} --device {args.device} --crop {args.crop} "
        f"--workers {args.workers} --resident {args.resident}"
    )
    print(f"step_overhead: {lightning_ms / bare_ms:.3f}")


if __name__ == "__main__":
    main()

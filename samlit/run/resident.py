"""``cache.device``: where a run keeps its prepared embeddings while it trains.

``cpu``: each group carries its embedding, read from the store by a loader worker, pinned by the loader and copied
to the device per step. ``cuda``: every embedding the run reads is loaded into GPU memory once, after the prepare
stage, and the groups carry only its ``image_digest``: a GPU step is then the decoder alone (StaVer: ~400 images x
2 MiB in float16). ``auto``: ``cuda`` when the trainer runs on a CUDA device and they take at most ``BUDGET_SHARE``
of its free memory, else ``cpu``. On a CPU-only run every choice but ``cuda`` changes nothing; ``cuda`` there is an
error.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from samlit.core.errors import SamlitError

log = logging.getLogger(__name__)
BUDGET_SHARE = 0.25  # of the device's free memory that resident embeddings may take (auto)


def resolve_device(requested: str, *, on_cuda: bool, need_bytes: int, free_bytes: int | None) -> str:
    """``cpu`` or ``cuda`` for ``cache.device=requested``: ``need_bytes`` of embeddings, ``free_bytes`` free on
    the training device (``None`` when it is not a CUDA device). Raises ``SamlitError`` for ``cuda`` without a
    CUDA trainer or when they do not fit at all."""
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not on_cuda:
            raise SamlitError("cache.device=cuda but the trainer does not run on a CUDA GPU; use cache.device=auto|cpu")
        if free_bytes is not None and need_bytes > free_bytes:
            raise SamlitError(
                f"cache.device=cuda: the run's embeddings take {need_bytes / 2**30:.2f} GiB, the GPU has "
                f"{free_bytes / 2**30:.2f} GiB free; use cache.device=auto (keeps them on the CPU when they do not fit)"
            )
        return "cuda"
    fits = free_bytes is not None and need_bytes <= BUDGET_SHARE * free_bytes
    return "cuda" if on_cuda and fits else "cpu"


def keep_resident(
    *, store: Any, module: Any, datamodule: Any, trainer: L.Trainer, splits: tuple[str, ...] = ("train", "val", "test")
) -> str:
    """After the prepare stage: with ``cache.device`` resolved to ``cuda``, load the features (``module.feature_names``:
    the embedding, in HQ mode also the early ViT feature) of every entry ``splits`` read onto the trainer's device
    into ``module.resident`` (by ``image_digest``) and stop the loaders carrying them (``datamodule.feature_names``).
    Returns the device chosen."""
    device = trainer.strategy.root_device
    on_cuda = device.type == "cuda"
    keys = [key for _, _, key, tag in datamodule.planned(splits=splits) if tag is not None]
    if not on_cuda and store.device != "cuda":
        return "cpu"
    names = module.feature_names
    first = store.read(keys[0]) if keys else None  # every entry of a run holds features of the same shapes
    per_entry = sum(first.features[n].numel() * first.features[n].element_size() for n in names) if first else 0
    free = torch.cuda.mem_get_info(device)[0] if on_cuda else None
    choice = resolve_device(store.device, on_cuda=on_cuda, need_bytes=per_entry * len(keys), free_bytes=free)
    if choice == "cpu":
        return choice
    module.resident = {}
    for key in keys:
        item = store.read(key)
        if item.image_digest not in module.resident:
            module.resident[item.image_digest] = {name: item.features[name].to(device) for name in names}
    datamodule.feature_names = ()
    log.info("cache.device=%s: the features of %d frames kept on %s", store.device, len(module.resident), device)
    return choice

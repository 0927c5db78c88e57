"""Fill the embedding cache before training: every image the run will encode (each training scan's
augmentation views, the val and test scans) goes through the frozen encoder once.

It runs as ``trainer.predict`` so Lightning supplies the device, the progress bar (images/s) and, under DDP,
the sharding: each rank encodes its share, then all ranks meet at a barrier and read the shared disk cache.

``python embed.py [the same overrides as train.py]`` prebuilds the cache without training.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from omegaconf import DictConfig

from samlit.model.module import Group, SamFineTuner
from samlit.run.setup import setup

log = logging.getLogger(__name__)


class EmbeddingBuilder(L.LightningModule):
    """``predict_step`` asks ``tuner`` for each image's embedding: computed and stored on a miss."""

    def __init__(self, tuner: SamFineTuner) -> None:
        super().__init__()
        self.tuner = tuner

    def predict_step(self, batch: list[Group], batch_idx: int) -> None:
        for group in batch:
            self.tuner.image_embedding(group)


def build_embeddings(*, trainer: L.Trainer, tuner: SamFineTuner, datamodule: Any) -> None:
    """Encode every image of ``datamodule.embedding_dataloader()`` not yet in ``tuner.embeddings``."""
    cache = tuner.embeddings
    if cache.mode == "none":
        log.info("embedding cache off (cache=none): the encoder runs at every step")
        return
    before = (cache.stats.hits, cache.stats.misses)
    start = time.perf_counter()
    trainer.predict(EmbeddingBuilder(tuner), dataloaders=datamodule.embedding_dataloader(), return_predictions=False)
    trainer.strategy.barrier("embedding cache built")
    hits, misses = cache.stats.hits - before[0], cache.stats.misses - before[1]
    seconds = time.perf_counter() - start
    log.info(
        "embedding cache (%s%s): %d images, %d already cached, %d encoded in %.1f s (%.2f images/s); run so far: %s",
        cache.mode,
        f" at {cache.root}" if cache.root else "",
        hits + misses,
        hits,
        misses,
        seconds,
        misses / seconds if seconds > 0 else 0.0,
        cache.stats.line(),
    )


def main(cfg: DictConfig) -> None:
    """``python embed.py``: build the cache for the data and model ``cfg`` describes, nothing else."""
    job = setup(cfg, with_loggers=False, needs=())  # seeded as train.py: random weights must be the same weights
    build_embeddings(trainer=job.trainer, tuner=job.module, datamodule=job.datamodule)

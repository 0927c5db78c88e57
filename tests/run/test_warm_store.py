"""A warm run (item store and embeddings from an earlier run) decodes only the images its figures draw, and
gives the same numbers as the cold run."""

from __future__ import annotations

import json

from omegaconf import open_dict

from samlit.data.staver import StaverSource
from samlit.run import train
from tests.conftest import FAST


def test_a_warm_run_reads_only_the_drawn_images_and_gives_the_same_metrics(compose_cfg, monkeypatch, tmp_path):
    reads: list[str] = []
    read = StaverSource.read
    monkeypatch.setattr(StaverSource, "read", lambda self, record: reads.append(record.key) or read(self, record))
    metrics = []
    for run in ("cold", "warm"):
        reads.clear()
        cfg = compose_cfg(*FAST, "data.num_workers=0", "figures=2", "logger=csv")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / run)
            del cfg["hydra"]  # what @hydra.main hands a job (its own node stays in HydraConfig)
        train.main(cfg)
        metrics.append(json.loads((tmp_path / run / "metrics.json").read_text()))
        if run == "cold":
            cold_reads = len(reads)
    cold, warm = metrics
    assert warm["embedding_cache"]["misses"] == 0 and cold["embedding_cache"]["misses"] > 0
    # the warm run read the two images drawn in each of its two test passes' figures, nothing else
    assert len(reads) == 4 < cold_reads and len(set(reads)) <= 2, reads
    for key in ("zero_shot", "fine_tuned"):
        assert warm[key] == cold[key]
    assert warm["frame"]["ceiling"] == cold["frame"]["ceiling"]
    assert warm["per_scan"] == cold["per_scan"]


def test_a_new_encoder_on_a_warm_store_reads_each_image_once_to_encode_it(compose_cfg, monkeypatch, tmp_path):
    """The store is the model's business no more than the data's: another encoder (here another cache dtype, so
    another cache folder) finds every item prepared, misses every embedding, and reads each image once."""
    from samlit.run import embed

    reads: list[str] = []
    read = StaverSource.read
    monkeypatch.setattr(StaverSource, "read", lambda self, record: reads.append(record.key) or read(self, record))
    counts = {}
    for dtype in ("float16", "float32"):
        reads.clear()
        cfg = compose_cfg(*FAST, "data.num_workers=0", f"cache.dtype={dtype}", name="embed")
        with open_dict(cfg):
            del cfg["hydra"]
        job = embed.setup(cfg, with_loggers=False, needs=())
        embed.build_embeddings(trainer=job.trainer, tuner=job.module, datamodule=job.datamodule)
        counts[dtype] = (len(reads), job.module.embeddings.stats.misses)
    images = counts["float16"][1]
    assert images > 0 and counts == {"float16": (images, images), "float32": (images, images)}
    assert len(list((tmp_path / "cache" / "items").rglob("*.safetensors"))) == images

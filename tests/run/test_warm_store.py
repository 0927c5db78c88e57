"""A warm run (a second ``train.py`` run on the same store) makes no entry, reads only the images its figures draw,
and gives the same numbers as the cold run; a new encoder (other weights, other precision) on a warm store
prepares its entries again, with its own features."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import open_dict

from samlit.data.staver import StaverSource
from samlit.model.sam import build_sam
from samlit.run import train
from samlit.run.export import export_sam
from samlit.run.prepare import prepare
from samlit.run.setup import setup
from tests.conftest import FAST


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The key of every record read from its files (``StaverSource.read``: synthetic data is in its layout)."""
    keys: list[str] = []
    read = StaverSource.read
    monkeypatch.setattr(StaverSource, "read", lambda self, record: keys.append(record.key) or read(self, record))
    return keys


def test_a_warm_run_makes_nothing_reads_only_the_drawn_images_and_gives_the_same_metrics(compose_cfg, reads, tmp_path):
    metrics, counts = [], []
    for run in ("cold", "warm"):
        reads.clear()
        cfg = compose_cfg(*FAST, "data.num_workers=0", "figures=2", "logger=csv")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / run)
            del cfg["hydra"]  # what @hydra.main hands a job (its own node stays in HydraConfig)
        train.main(cfg)
        metrics.append(json.loads((tmp_path / run / "metrics.json").read_text()))
        counts.append(len(reads))
    cold, warm = metrics
    assert cold["store"]["mode"] == "disk" and cold["store"]["made"] == cold["store"]["entries"] > 0
    assert cold["store"]["encoded"] > 0 and cold["store"]["found"] == 0
    assert (warm["store"]["found"], warm["store"]["made"], warm["store"]["encoded"]) == (cold["store"]["entries"], 0, 0)
    assert warm["store"]["bytes_written"] == 0
    assert cold["store"]["encoded_in_steps"] == warm["store"]["encoded_in_steps"] == 0  # the steps read embeddings
    # the warm run read the two images drawn in each of its two test passes' figures, nothing else
    assert counts[1] == len(reads) == 4 < counts[0] and len(set(reads)) <= 2, reads
    for key in ("zero_shot", "fine_tuned"):
        assert warm[key] == cold[key]
    assert warm["frame"]["ceiling"] == cold["frame"]["ceiling"]
    assert warm["per_image"] == cold["per_image"]


def test_a_new_encoder_on_a_warm_store_prepares_again_with_its_features(compose_cfg, reads, tmp_path):
    """The features are keyed by the encoder (``sam_fingerprint``: weights and precision): another encoder finds
    the entries it shares (the report's other frame, prepared without features) and makes the rest again, each
    item read once and encoded once; the first encoder's entries are still there."""
    torch.manual_seed(1)
    other_weights = export_sam(build_sam(model_type="tiny"), tmp_path / "other_tiny.pth")
    stats, read, tags = {}, {}, {}
    encoders = {
        "first": [],
        "other weights": [f"model.weights={other_weights}"],
        "other precision": ["trainer.precision=bf16-mixed"],
        "first again": [],
    }
    for name, overrides in encoders.items():
        reads.clear()
        cfg = compose_cfg(*FAST, "data.num_workers=0", *overrides, name="prepare")
        with open_dict(cfg):
            del cfg["hydra"]
        job = setup(cfg, with_loggers=False, needs=())
        stats[name] = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)
        read[name], tags[name] = len(reads), job.datamodule.features
    first = stats["first"]
    assert first.made == first.entries == read["first"] and 0 < first.encoded < first.entries
    for name in ("other weights", "other precision"):
        assert (stats[name].entries, stats[name].found) == (first.entries, first.entries - first.encoded), name
        assert stats[name].made == stats[name].encoded == read[name] == first.encoded, name
    assert len(set(tags.values())) == 3 and tags["first again"] == tags["first"]
    again = stats["first again"]
    assert (again.found, again.made, read["first again"]) == (first.entries, 0, 0)
    assert len(list((tmp_path / "cache" / "store").rglob("*.safetensors"))) == first.entries + 2 * first.encoded

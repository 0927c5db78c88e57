"""The frozen encoder's embeddings: what their features tag (``samlit.model.fingerprint``) follows, how prepare()
stores them (storage dtype, round-off, other weights, a damaged entry re-encoded), how the module takes them."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from samlit.data.dataset import make_item
from samlit.data.sample import InstanceSample
from samlit.data.store import Store
from samlit.model.fingerprint import encoder_fingerprint, sam_fingerprint
from samlit.model.sam import encode_image
from samlit.run.prepare import Preparer, PrepareStats
from tests.data.test_store import damage, encoder, job, run_prepare  # noqa: F401  (encoder: a fixture)


def test_encoder_fingerprint_changes_with_weights_model_and_preprocessing():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))
    base = encoder_fingerprint(module, model_type="tiny", pixel_mean=[1.0])
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert encoder_fingerprint(module, model_type="tiny", pixel_mean=[1.0]) == base
    assert encoder_fingerprint(module, model_type="vit_b", pixel_mean=[1.0]) != base
    assert encoder_fingerprint(module, model_type="tiny", pixel_mean=[2.0]) != base
    with torch.no_grad():
        module[1].bias[0] += 1e-6
    assert encoder_fingerprint(module, model_type="tiny", pixel_mean=[1.0]) != base


def test_sam_fingerprint_follows_the_encoder_weights_and_the_precision(compose_cfg):
    cfg = compose_cfg()
    torch.manual_seed(0)
    first = instantiate(cfg.module).sam
    torch.manual_seed(0)
    same = instantiate(cfg.module).sam
    torch.manual_seed(1)
    other = instantiate(cfg.module).sam  # random weights drawn from another seed
    fingerprint = sam_fingerprint(first)
    assert re.fullmatch(r"tiny-[0-9a-f]{16}", fingerprint)
    assert fingerprint == sam_fingerprint(same) == sam_fingerprint(first, precision="32-true")
    assert sam_fingerprint(other) != fingerprint
    mixed = {sam_fingerprint(first, precision=p) for p in ("bf16-mixed", "16-mixed")}
    assert len(mixed) == 2 and fingerprint not in mixed  # another autocast dtype: other features
    with torch.no_grad():
        first.mask_decoder.iou_prediction_head.layers[0].bias[0] += 1  # the decoder trains: not a feature input
    assert sam_fingerprint(first) == fingerprint
    assert Store(root="x", dtype="float32").features_tag(fingerprint) == f"{fingerprint}-float32"


def test_other_weights_or_storage_dtype_prepare_every_embedding_anew(compose_cfg, encoder):  # noqa: F811
    first = run_prepare(job(compose_cfg))
    assert first.made == first.encoded == first.entries > 0
    other_weights = job(compose_cfg)
    with torch.no_grad():
        next(other_weights.module.sam.image_encoder.parameters()).add_(1e-3)
    for again in (other_weights, job(compose_cfg, "cache.dtype=float32")):
        stats = run_prepare(again)
        assert (stats.found, stats.encoded, stats.entries) == (0, first.entries, first.entries)
    assert run_prepare(job(compose_cfg)).found == first.entries  # the first weights' entries are still there


def test_float16_entries_are_close_to_a_fresh_encoder_pass(compose_cfg, tmp_path, capsys):
    """The stored float16 embedding vs the float32 encoder output: the round-off, reported. The module takes it
    back as float32."""
    module = instantiate(compose_cfg().module)
    rng = np.random.default_rng(3)
    masks = np.zeros((1, 300, 200), bool)
    masks[0, 50:90, 40:120] = True
    sample = InstanceSample(
        key="k",
        image=rng.integers(0, 255, (300, 200, 3), np.uint8),
        masks=masks,
        boxes=np.array([[40, 50, 120, 90]], np.float32),
    )
    item, image = make_item(lambda record: record, sample, instance=None, view=0, augment=None, margin=0.1)
    store = Store(root=tmp_path / "store", dtype="float16")
    Preparer(sam=module.sam, store=store, stats=PrepareStats()).predict_step(
        [{"key": "ab" * 32, "item": item, "image": image, "features": "tag"}], 0
    )
    stored = Store(root=tmp_path / "store").read("ab" * 32).features["embedding"]
    with torch.no_grad():
        fresh = encode_image(module.sam, image)
    assert stored.dtype == torch.float16 and stored.shape == fresh.shape == (1, 256, 64, 64)
    taken = module.image_embedding({"key": "k", "embedding": stored})
    assert taken.dtype == torch.float32 and module.encoder_calls == 0
    max_abs = (taken - fresh).abs().max().item()
    scale = fresh.abs().max().item()
    with capsys.disabled():
        print(f"\nfp16 store vs fresh fp32 embedding: max abs diff {max_abs:.2e} (max |value| {scale:.2f})")
    assert 0 < max_abs <= scale * 2**-11  # fp16 keeps 11 significant bits


@pytest.mark.parametrize("how", ["truncated", "flipped", "header", "empty"])
def test_a_damaged_entry_is_encoded_again_by_prepare(compose_cfg, encoder, caplog, how):  # noqa: F811
    first = job(compose_cfg)
    run_prepare(first)
    dm = first.datamodule
    key = dm.planned()[0][2]
    good = dm.store.read(key).features["embedding"]
    damage(dm.store.path(key), how)
    calls = encoder.calls

    again = job(compose_cfg)  # another process: nothing verified yet
    with caplog.at_level(logging.WARNING, logger="samlit.run.prepare"):
        stats = run_prepare(again)
    assert (stats.damaged, stats.made, stats.encoded, encoder.calls - calls) == (1, 1, 1, 1)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"store: {dm.store.path(key)} is damaged (") and "\n" not in warning
    assert torch.equal(Store(root=dm.store.root).read(key).features["embedding"], good)  # rewritten whole
    caplog.clear()
    assert run_prepare(job(compose_cfg)).found == stats.entries
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

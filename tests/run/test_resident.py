"""``cache.device`` (``samlit.run.resident``): where a run keeps its prepared embeddings while it trains. ``auto``
keeps them on the GPU when they fit its budget, else on the CPU; ``cuda`` is honoured or refused in one line; a CPU
trainer changes nothing (the loaders carry each embedding)."""

from __future__ import annotations

import pytest
import torch

from samlit.core.errors import SamlitError
from samlit.run import resident
from samlit.run.prepare import prepare
from samlit.run.resident import BUDGET_SHARE, keep_resident, resolve_device
from tests.run.test_prepare import cheap_encoder, fast_job

GIB = 2**30


@pytest.mark.parametrize(
    "requested,on_cuda,need,free,expected",
    [
        ("auto", False, 1 * GIB, None, "cpu"),  # a CPU trainer
        ("auto", True, 1 * GIB, 8 * GIB, "cuda"),  # fits the budget
        ("auto", True, int(BUDGET_SHARE * 8 * GIB), 8 * GIB, "cuda"),  # exactly the budget
        ("auto", True, 3 * GIB, 8 * GIB, "cpu"),  # fits the GPU, not the budget: the training needs the rest
        ("auto", True, 9 * GIB, 8 * GIB, "cpu"),
        ("cpu", True, 1, 8 * GIB, "cpu"),
        ("cpu", False, 1, None, "cpu"),
        ("cuda", True, 3 * GIB, 8 * GIB, "cuda"),  # asked for: above the budget but within the free memory
    ],
)
def test_resolve_device(requested, on_cuda, need, free, expected):
    assert resolve_device(requested, on_cuda=on_cuda, need_bytes=need, free_bytes=free) == expected


def test_cuda_without_a_cuda_trainer_is_one_line():
    with pytest.raises(SamlitError) as error:
        resolve_device("cuda", on_cuda=False, need_bytes=1, free_bytes=None)
    message = str(error.value)
    assert "cache.device=cuda" in message and "cache.device=auto" in message and "\n" not in message


def test_cuda_that_cannot_fit_is_one_line_with_the_sizes():
    with pytest.raises(SamlitError) as error:
        resolve_device("cuda", on_cuda=True, need_bytes=10 * GIB, free_bytes=8 * GIB)
    message = str(error.value)
    assert "10.00 GiB" in message and "8.00 GiB free" in message and "cache.device=auto" in message
    assert "\n" not in message


def test_keep_resident_on_a_cpu_trainer_changes_nothing(compose_cfg, monkeypatch):
    """``cache.device=auto`` (the default) and ``cpu`` on a CPU trainer: the loaders carry each embedding."""
    cheap_encoder(monkeypatch)
    for device in ("auto", "cpu"):
        job = fast_job(compose_cfg, f"cache.device={device}")
        prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule)  # calls keep_resident
        assert job.datamodule.feature_names == ("embedding",) and job.module.resident == {}
        args = {"store": job.datamodule.store, "module": job.module, "datamodule": job.datamodule}
        assert keep_resident(**args, trainer=job.trainer) == "cpu" and job.datamodule.feature_names == ("embedding",)
        assert "embedding" in job.datamodule.dataset("train", train=True)[0]


def test_cache_device_cuda_on_a_cpu_trainer_is_one_line(compose_cfg, monkeypatch):
    cheap_encoder(monkeypatch)
    job = fast_job(compose_cfg)  # setup refuses cache.device=cuda without a GPU (test_setup.py); prepare does too
    job.datamodule.store.device = "cuda"
    with pytest.raises(SamlitError, match=r"cache.device=cuda but the trainer does not run on a CUDA GPU"):
        prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule)
    assert job.datamodule.feature_names == ("embedding",) and job.module.resident == {}


def test_resident_embeddings_replace_the_groups_own(compose_cfg, monkeypatch):
    """What ``cuda`` does, on this CPU (the choice forced): every embedding the run reads is loaded once, by
    ``image_digest``; the groups stop carrying theirs, and the module finds the same tensor by the digest."""
    cheap_encoder(monkeypatch)
    monkeypatch.setattr(resident, "resolve_device", lambda *args, **kwargs: "cuda")
    job = fast_job(compose_cfg)
    job.datamodule.store.device = "cuda"
    datamodule, module = job.datamodule, job.module
    prepare(trainer=job.trainer, module=module, datamodule=datamodule)
    embeddings = [f["embedding"] for f in module.resident.values()]
    assert datamodule.feature_names == () and len({float(e[0, 0, 0, 0]) for e in embeddings}) > 1
    for split, train in (("train", True), ("val", False), ("test", False)):
        datamodule.feature_names = ()
        light = datamodule.dataset(split, train=train)[0]
        datamodule.feature_names = ("embedding",)
        full = datamodule.dataset(split, train=train)[0]
        assert "embedding" not in light and light["image_digest"] in module.resident
        assert torch.equal(module.image_embedding(light), module.image_embedding(full))
    assert module.encoder_calls == 0

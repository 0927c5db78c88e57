"""The embedding cache: hits and misses, invalidation, corruption, concurrent writers, fp16 error, CLI."""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from samlit.core.errors import SamlitError
from samlit.model.embeddings import EmbeddingCache, decode_entry, encode_entry, encoder_fingerprint

FINGERPRINT = "0123456789abcdef"


def image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    return torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Encoder:
    """A stand-in encoder that counts its calls and returns a fixed (1, 256, 64, 64) embedding per image."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, img: torch.Tensor):
        def compute() -> torch.Tensor:
            self.calls += 1
            return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(int(img.sum())))

        return compute


def get(cache: EmbeddingCache, encoder: Encoder, img: torch.Tensor, fingerprint: str = FINGERPRINT) -> torch.Tensor:
    return cache.get(fingerprint=fingerprint, image=img, compute=encoder(img))


def test_disk_cache_persists_across_instances(tmp_path):
    encoder, a, b = Encoder(), image(0), image(1)
    first = EmbeddingCache(mode="disk", root=tmp_path)
    ea = get(first, encoder, a)
    assert torch.equal(get(first, encoder, a), ea) and encoder.calls == 1
    get(first, encoder, b)
    assert (first.stats.hits, first.stats.misses) == (1, 2)
    second = EmbeddingCache(mode="disk", root=tmp_path)  # another run, same folder
    assert torch.equal(get(second, encoder, a), ea) and encoder.calls == 2
    assert (second.stats.hits, second.stats.misses, second.stats.bytes_written) == (1, 0, 0)
    assert ea.dtype == torch.float32 and ea.shape == (1, 256, 64, 64)


def test_memory_and_none_modes(tmp_path):
    encoder, a = Encoder(), image(0)
    memory = EmbeddingCache(mode="memory")
    get(memory, encoder, a), get(memory, encoder, a)
    assert encoder.calls == 1 and not list(tmp_path.iterdir())
    none = EmbeddingCache(mode="none")
    for _ in range(3):
        get(none, encoder, a)
    assert encoder.calls == 4 and none.stats.misses == 3 and none.stats.hits == 0


def test_same_pixels_hit_other_pixels_or_fingerprint_miss(tmp_path):
    cache, encoder = EmbeddingCache(mode="disk", root=tmp_path), Encoder()
    a = image(0)
    get(cache, encoder, a)
    get(cache, encoder, a.clone())  # same pixels, another tensor: a hit
    changed = a.clone()
    changed[0, 0, 0] ^= 1  # one pixel differs by one grey level
    get(cache, encoder, changed)
    get(cache, encoder, a, fingerprint="fedcba9876543210")  # another encoder
    get(cache, encoder, a[:, :, :-1].contiguous())  # another size
    assert (cache.stats.hits, cache.stats.misses) == (1, 4)


def test_fingerprint_changes_with_weights_model_and_preprocessing():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))
    base = encoder_fingerprint(encoder, model_type="tiny", pixel_mean=[1.0])
    assert encoder_fingerprint(encoder, model_type="tiny", pixel_mean=[1.0]) == base
    assert encoder_fingerprint(encoder, model_type="vit_b", pixel_mean=[1.0]) != base
    assert encoder_fingerprint(encoder, model_type="tiny", pixel_mean=[2.0]) != base
    with torch.no_grad():
        encoder[1].bias[0] += 1e-6
    assert encoder_fingerprint(encoder, model_type="tiny", pixel_mean=[1.0]) != base


def fingerprint_of(module):
    return module.embeddings.fingerprint(module.sam)


def test_module_fingerprint_follows_the_encoder_weights(compose_cfg):
    cfg = compose_cfg()
    torch.manual_seed(0)
    first = fingerprint_of(instantiate(cfg.module))
    torch.manual_seed(0)
    same = fingerprint_of(instantiate(cfg.module))
    torch.manual_seed(1)
    other = fingerprint_of(instantiate(cfg.module))  # random weights drawn from another seed
    assert first == same != other


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated (killed writer, full disk)
        lambda data: data[:-100] + bytes(b ^ 0xFF for b in data[-100:]),  # flipped bytes in the payload
        lambda data: b"{not json" + data[9:],  # broken header
        lambda data: b"",  # zero bytes
    ],
    ids=["truncated", "flipped", "header", "empty"],
)
def test_corrupt_entry_is_logged_and_recomputed(tmp_path, caplog, damage):
    cache, encoder, a = EmbeddingCache(mode="disk", root=tmp_path), Encoder(), image(0)
    good = get(cache, encoder, a)
    path = cache.path(cache.key(fingerprint=FINGERPRINT, image=a))
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="samlit.model.embeddings"):
        again = get(cache, encoder, a)
    assert torch.equal(again, good) and encoder.calls == 2 and cache.stats.corrupt == 1
    assert len(caplog.records) == 1 and str(path) in caplog.text and "corrupt" in caplog.text
    assert torch.equal(decode_entry(path.read_bytes()).float(), good)  # rewritten whole
    caplog.clear()
    get(cache, encoder, a)
    assert not caplog.records and cache.stats.hits == 1


def test_entry_round_trip_is_exact():
    for dtype in (torch.float16, torch.float32, torch.bfloat16):
        embedding = torch.randn(1, 256, 64, 64).to(dtype)
        assert torch.equal(decode_entry(encode_entry(embedding)), embedding)


def _write_many(root: str, seed: int, rounds: int) -> None:
    cache = EmbeddingCache(mode="disk", root=root)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0)).half()
    key = cache.key(fingerprint=FINGERPRINT, image=image(0))
    for _ in range(rounds):
        cache._write(key, embedding)


@pytest.mark.slow
def test_two_processes_writing_one_entry_leave_a_whole_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path), seed, 40)) for seed in range(2)]
    for writer in writers:
        writer.start()
    reader, reads = EmbeddingCache(mode="disk", root=tmp_path), 0
    path = reader.path(reader.key(fingerprint=FINGERPRINT, image=image(0)))
    while any(w.is_alive() for w in writers):
        if path.exists():  # every read while both write must see a whole entry
            decode_entry(path.read_bytes())
            reads += 1
    assert all(w.exitcode == 0 for w in writers)
    expected = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0)).half()
    assert torch.equal(decode_entry(path.read_bytes()), expected)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
    assert reads > 0


def test_fp16_entries_are_close_to_a_fresh_encoder_pass(compose_cfg, capsys):
    """The cached fp16 embedding vs the fp32 encoder output: the round-off, reported."""
    module = instantiate(compose_cfg().module)
    module.embeddings = EmbeddingCache(mode="disk", root=compose_cfg().paths.cache_dir, dtype="float16")
    img = image(3, size=(1024, 768))
    group = {"image": img}
    module.image_embedding(group)  # fills the cache
    cached = module.image_embedding(group)
    with torch.no_grad():
        fresh = module.sam.image_encoder(module.sam.preprocess(img[None].float()))
    max_abs = (cached - fresh).abs().max().item()
    scale = fresh.abs().max().item()
    with capsys.disabled():
        print(f"\nfp16 cache vs fresh fp32 embedding: max abs diff {max_abs:.2e} (max |value| {scale:.2f})")
    assert module.embeddings.stats.hits == 1
    assert 0 < max_abs <= scale * 2**-11  # fp16 keeps 11 significant bits


def test_memory_entries_filled_in_inference_mode_can_train():
    cache, encoder, a = EmbeddingCache(mode="memory"), Encoder(), image(0)
    with torch.inference_mode():
        get(cache, encoder, a)
    weight = torch.ones((), requires_grad=True)
    (get(cache, encoder, a) * weight).sum().backward()  # an inference tensor here would raise
    assert weight.grad is not None


def test_unwritable_cache_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = EmbeddingCache(mode="disk", root=blocker / "embeddings")
    with pytest.raises(SamlitError, match=r"cannot (read|write) the embedding cache at .*a-file"):
        get(cache, Encoder(), image(0))


def test_bad_mode_is_a_clear_error():
    with pytest.raises(SamlitError, match=r"cache\.mode='ram'"):
        EmbeddingCache(mode="ram")


@pytest.mark.slow
def test_cli_info_verify_and_clear(tmp_path):
    cache = EmbeddingCache(mode="disk", root=tmp_path)
    cache.describe(FINGERPRINT, model_type="tiny")
    encoder = Encoder()
    for seed in range(3):
        get(cache, encoder, image(seed))
    damaged = cache.path(cache.key(fingerprint=FINGERPRINT, image=image(0)))
    damaged.write_bytes(damaged.read_bytes()[:1000])

    def cli(*args: str) -> str:
        command = [sys.executable, "-m", "samlit.cache", *args, "--dir", str(tmp_path)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return result.stdout

    weights = tmp_path / "weights" / "sam_vit_b_01ec64.pth"  # $SAMLIT_CACHE/weights beside a user's clear --dir
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    other = tmp_path / "fedcba9876543210-float32" / "notes.txt"  # named like a cache folder, not the cache's file
    other.parent.mkdir()
    other.write_text("mine")
    (tmp_path / "fedcba9876543210-float32" / "meta.json").write_text("{trunc")  # damaged meta: no traceback

    info = cli("info", "--verify")
    assert "3 entries" in info and "tiny" in info and "1 corrupt" in info
    cleared = cli("clear")
    assert "removed 2 fingerprint folder" in cleared and f"kept {other}" in cleared
    assert "0 entries" in cli("info")
    assert not Path(tmp_path, f"{FINGERPRINT}-float16").exists()
    assert weights.read_bytes() == b"weights" and other.read_text() == "mine"  # nothing the cache did not write
    for bad in (tmp_path / "missing", weights):
        result = subprocess.run([sys.executable, "-m", "samlit.cache", "info", "--dir", str(bad)], capture_output=True)
        assert result.returncode == 2 and str(bad).encode() in result.stderr and b"Traceback" not in result.stderr


def test_an_entry_is_hashed_on_its_first_read_in_a_process_only(tmp_path, monkeypatch):
    """Every epoch reads every entry: the SHA-256 (two thirds of a read) runs once per entry and process."""
    import samlit.model.embeddings as embeddings

    cache, encoder, a = EmbeddingCache(mode="disk", root=tmp_path), Encoder(), image(0)
    get(cache, encoder, a)  # computed and written
    hashed = []
    sha256 = embeddings.hashlib.sha256
    monkeypatch.setattr(embeddings.hashlib, "sha256", lambda data=b"": hashed.append(len(data)) or sha256(data))
    for _ in range(3):
        get(cache, encoder, a)
    payloads = [n for n in hashed if n > 1000]  # (the image digests hash a short header first)
    assert cache.stats.hits == 3 and encoder.calls == 1 and len(payloads) == 1  # the first read only
    path = cache.path(cache.key(fingerprint=FINGERPRINT, image=a))
    path.write_bytes(path.read_bytes()[:1000])  # a truncation is still seen on every read
    get(cache, encoder, a)
    assert cache.stats.corrupt == 1 and encoder.calls == 2

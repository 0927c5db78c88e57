"""The item store: a warm store serves the same items as the files, reads no image, follows every change of the
files or settings, and rebuilds a damaged entry."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from samlit.core.digests import image_digest
from samlit.data.item_store import ItemStore, PreparedItem, decode_item, encode_item, pack_masks, unpack_masks
from tests.conftest import FAST


def random_masks(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, *size), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, size[0] - 5), rng.integers(0, size[1] - 5)
        masks[i, y0 : y0 + rng.integers(1, 30), x0 : x0 + rng.integers(1, 30)] = rng.random((1,)) < 2
        masks[i] &= rng.random(size) < 0.6  # thin, ragged ink
    return masks


@pytest.mark.parametrize("n", [0, 1, 3])
def test_masks_pack_into_their_windows_and_back(n):
    masks = random_masks(n, (57, 83))
    if n == 3:
        masks[1] = False  # an empty mask survives as an empty window
    packed = pack_masks(masks)
    assert packed["windows"].shape == (n, 4) and packed["offsets"].shape == (n + 1,)
    assert packed["bits"].numel() <= sum(m.any() and m.size for m in masks) / 8 + n  # windows only, 8 px a byte
    back = unpack_masks(*(packed[k].numpy() for k in ("windows", "bits", "offsets")), size=(57, 83))
    assert np.array_equal(back, masks)


def prepared(n: int = 2, crop_box=None) -> PreparedItem:
    return PreparedItem(
        key="stampDS-00001-s1",
        image_digest="ab" * 32,
        boxes=np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        masks=random_masks(n, (40, 60)),
        low_res_targets=torch.rand(n, 256, 256),
        original_size=(40, 60),
        input_size=(683, 1024),
        crop_box=crop_box,
    )


@pytest.mark.parametrize("n, crop_box", [(2, (3, 4, 63, 44)), (0, None)])
def test_an_entry_decodes_to_what_was_stored(n, crop_box):
    item = prepared(n, crop_box)
    back = decode_item(encode_item(item))
    for field in ("key", "image_digest", "original_size", "input_size", "crop_box"):
        assert getattr(back, field) == getattr(item, field)
    assert np.array_equal(back.boxes, item.boxes) and np.array_equal(back.masks, item.masks)
    assert torch.equal(back.low_res_targets, item.low_res_targets)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_entry_is_logged_and_missed(tmp_path, caplog, damage):
    store = ItemStore(root=tmp_path)
    store.put("cd" * 32, prepared())
    path = store.path("cd" * 32)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF  # inside the targets: only the checksum sees it
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert store.get("cd" * 32) is None
    assert f"item store: {path} is damaged" in caplog.text


def datamodule(compose_cfg, *overrides, store=True):
    cfg = compose_cfg(*FAST, "data.num_workers=0", *overrides, *([] if store else ["cache=memory"]))
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


class CountingReads:
    """Wraps a source's ``read``: counts the images decoded."""

    def __init__(self, dm):
        self.calls, self.read = 0, dm.source.read
        dm.source.read = self

    def __call__(self, record):
        self.calls += 1
        return self.read(record)


def items(dm, split="train", *, train=True, epoch=3):
    dataset = dm.dataset(split, train=train)
    return [dataset[(epoch, i)] for i in range(len(dataset))]


def assert_same_items(stored, read):
    assert len(stored) == len(read)
    for got, want in zip(stored, read, strict=True):
        assert "image" not in got and got["image_digest"] == image_digest(want["image"])
        assert set(got) == set(want) - {"image"}
        for key, value in want.items():
            if isinstance(value, torch.Tensor) and key != "image":
                assert torch.equal(got[key], value), key
            elif key != "image":
                assert got[key] == value, key


@pytest.mark.parametrize(
    "overrides",
    [
        ("data.crop=box",),
        ("data.crop=none", "data.prompts.positive_points=2", "data.prompts.negative_points=1"),
        ("data.crop=box", "data.augment.views=2"),
    ],
    ids=["crops", "pages-with-points", "augmented-views"],
)
def test_a_warm_store_serves_the_same_items_without_reading_an_image(compose_cfg, overrides):
    read_items = items(datamodule(compose_cfg, *overrides, store=False))  # from the files, no store
    dm = datamodule(compose_cfg, *overrides)
    reads = CountingReads(dm)
    cold = items(dm)  # prepares and stores every item
    assert reads.calls == len(cold) and all("image" in group for group in cold)
    warm = items(dm)
    assert reads.calls == len(cold)  # not one image more
    assert_same_items(warm, read_items)
    items(dm, "val", train=False)  # cold
    read_val = items(datamodule(compose_cfg, *overrides, store=False), "val", train=False)
    assert_same_items(items(dm, "val", train=False), read_val)


def test_the_store_follows_the_files_and_the_settings(compose_cfg, tmp_path):
    dm = datamodule(compose_cfg)
    first = items(dm)
    record = dm.splits["train"][0]

    # touched, same content: still the same entries (the content is hashed again, the key does not move)
    stamp = os.stat(record.scan).st_mtime_ns + 10**9
    os.utime(record.scan, ns=(stamp, stamp))
    again = datamodule(compose_cfg)
    reads = CountingReads(again)
    items(again)
    assert reads.calls == 0

    # a changed ground truth: that scan's items are prepared again, and hold the new masks
    gt = cv2.imread(str(record.pixel_gt), cv2.IMREAD_GRAYSCALE)
    ink = np.argwhere(gt == 0)
    gt[tuple(ink[: len(ink) // 2].T)] = 255  # half the ink is gone
    cv2.imwrite(str(record.pixel_gt), gt)
    edited = datamodule(compose_cfg)
    reads = CountingReads(edited)
    after = items(edited)
    changed = [i for i, g in enumerate(after) if g["key"].startswith(record.key)]
    assert reads.calls == len(changed) > 0
    assert all(after[i]["masks"].sum() < first[i]["masks"].sum() for i in changed)

    # another setting of the frame: every item is prepared again
    margin = datamodule(compose_cfg, "data.crop_margin=0.3")
    reads = CountingReads(margin)
    items(margin)
    assert reads.calls == len(first)


def test_a_damaged_entry_is_prepared_again(compose_cfg, caplog):
    dm = datamodule(compose_cfg)
    first = items(dm)
    entries = sorted(dm.store.root.rglob("*.safetensors"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    reads = CountingReads(dm)
    with caplog.at_level(logging.WARNING):
        again = items(dm)
    assert reads.calls == 1 and "is damaged" in caplog.text
    assert all(torch.equal(a["low_res_targets"], b["low_res_targets"]) for a, b in zip(first, again, strict=True))
    assert decode_item(entries[0].read_bytes()) is not None  # rewritten whole


def test_cache_none_and_memory_keep_no_store(compose_cfg):
    for cache in ("none", "memory"):
        dm = datamodule(compose_cfg, f"cache={cache}")
        assert dm.store is None and all("image" in group for group in items(dm))


def test_worker_batches_arrive_as_tensors_equal_to_in_process_ones(compose_cfg):
    dm = datamodule(compose_cfg, "data.num_workers=2")
    items(dm, "val", train=False)  # cold: the loaders below read the warm store
    items(dm, "train", epoch=0)
    for loader in ("val_dataloader", "train_dataloader"):  # DataLoader; StatefulDataLoader (epoch 0)
        in_process = [group for batch in getattr(datamodule(compose_cfg), loader)() for group in batch]
        from_workers = [group for batch in getattr(dm, loader)() for group in batch]
        assert type(from_workers[0]) is dict and isinstance(from_workers[0]["low_res_targets"], torch.Tensor)
        assert len(from_workers) == len(in_process) > 0
        for got, want in zip(from_workers, in_process, strict=True):
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value


def test_cache_cli_reports_and_clears_the_store_beside_the_embeddings(tmp_path, capsys):
    from samlit.launch.cache_cli import cli

    embeddings, store = tmp_path / "embeddings", ItemStore(root=tmp_path / "items")
    embeddings.mkdir()
    for key in ("ab" * 32, "cd" * 32):
        store.put(key, prepared())
    (tmp_path / "items" / "files.json").write_text("{}")
    mine = tmp_path / "items" / "ab" / "notes.txt"
    mine.write_text("mine")
    assert cli(["info", "--dir", str(embeddings)]) == 0
    assert f"item store {tmp_path / 'items'}: 2 prepared items" in capsys.readouterr().out
    assert cli(["clear", "--dir", str(embeddings), "--fingerprint", "0123456789abcdef-float16"]) == 2  # not ours
    assert store.get("ab" * 32) is not None  # one fingerprint cleared: the store stays
    capsys.readouterr()
    assert cli(["clear", "--dir", str(embeddings)]) == 0
    out = capsys.readouterr().out
    assert f"kept {mine}" in out and "removed the item store" in out
    assert sorted(p.name for p in (tmp_path / "items").rglob("*")) == ["ab", "notes.txt"]


def test_a_full_disk_is_one_line_naming_the_entry_and_the_fix(tmp_path, monkeypatch):
    import errno

    from samlit.core import atomic
    from samlit.core.errors import SamlitError

    def full(path, data):
        raise atomic.write_error(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(atomic, "write_bytes", full)
    store = ItemStore(root=tmp_path)
    with pytest.raises(SamlitError) as error:
        store.put("ef" * 32, prepared())
    message = str(error.value)
    assert message.startswith(f"cannot write the item store at {store.path('ef' * 32)}: No space left on device")
    assert "paths.cache_dir" in message and "\n" not in message

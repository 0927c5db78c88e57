"""The store (``samlit.data.store``): one entry per prepared item, keyed by the item's content and settings; a
warm store serves the same items as the files without reading an image; the damage rule; info and clear."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from samlit.core.digests import image_digest
from samlit.core.errors import SamlitError
from samlit.data import store as store_module
from samlit.data.dataset import unpacked
from samlit.data.store import (
    DamagedEntry,
    MappedTensor,
    PackedMasks,
    PreparedItem,
    Store,
    clear_store,
    decode,
    encode,
    entry_key,
    store_info,
)
from samlit.run.prepare import prepare
from samlit.run.setup import build_datamodule, setup
from tests.conftest import FAST

KEY = "cd" * 32


def random_masks(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, *size), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, size[0] - 5), rng.integers(0, size[1] - 5)
        masks[i, y0 : y0 + rng.integers(1, 30), x0 : x0 + rng.integers(1, 30)] = True
        masks[i] &= rng.random(size) < 0.6  # thin, ragged ink
    return masks


@pytest.mark.parametrize("n", [0, 1, 3])
def test_masks_pack_into_their_windows_and_back(n):
    masks = random_masks(n, (57, 83))
    if n == 3:
        masks[1] = False  # an empty mask survives as an empty window
    packed = PackedMasks.pack(masks)
    assert packed.windows.shape == (n, 4) and packed.offsets.shape == (n + 1,)
    assert len(packed) == n and packed.shape == (n, 57, 83)
    assert packed.bits.size <= sum(m.any() and m.size for m in masks) / 8 + n  # windows only, 8 px a byte
    assert np.array_equal(packed.unpack(), masks)
    assert np.array_equal(np.asarray(packed), masks) and np.asarray(packed).dtype == bool  # what the prompts use
    assert np.array_equal(np.asarray(packed, dtype=np.uint8), masks.astype(np.uint8))


def prepared(n: int = 2, crop_box=None, features: dict | None = None) -> PreparedItem:
    return PreparedItem(
        key="stampDS-00001-s1",
        image_digest="ab" * 32,
        boxes=np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        masks=PackedMasks.pack(random_masks(n, (40, 60))),
        low_res_targets=torch.rand(n, 256, 256),
        original_size=(40, 60),
        input_size=(683, 1024),
        crop_box=crop_box,
        features=features or {},
    )


@pytest.mark.parametrize(
    "n, crop_box, dtype",
    [(2, (3, 4, 63, 44), torch.float16), (0, None, None), (1, None, torch.float32), (1, None, torch.bfloat16)],
)
def test_an_entry_decodes_to_what_was_stored(n, crop_box, dtype):
    """Every field, and the embedding bit for bit in its storage dtype."""
    features = {"embedding": torch.randn(1, 256, 64, 64).to(dtype)} if dtype else None
    item = prepared(n, crop_box, features)
    back = decode(encode(item, features="tiny-0123456789abcdef-float16" if dtype else None))
    for name in ("key", "image_digest", "original_size", "input_size", "crop_box"):
        assert getattr(back, name) == getattr(item, name)
    assert np.array_equal(back.boxes, item.boxes) and np.array_equal(np.asarray(back.masks), np.asarray(item.masks))
    assert torch.equal(back.low_res_targets, item.low_res_targets)
    assert back.features.keys() == item.features.keys()
    for name, value in item.features.items():
        assert back.features[name].dtype == value.dtype and torch.equal(back.features[name], value)


def test_the_key_is_a_function_of_identity_frame_and_features_only():
    frame = {"instance": 1, "margin": 0.1, "view": 0, "augment": None}
    key = entry_key("a" * 64, frame=frame, features="tiny-0123456789abcdef-float16")
    assert key == entry_key("a" * 64, frame=dict(reversed(frame.items())), features="tiny-0123456789abcdef-float16")
    others = [
        entry_key("b" * 64, frame=frame, features="tiny-0123456789abcdef-float16"),  # other files or source inputs
        entry_key("a" * 64, frame={**frame, "margin": 0.2}, features="tiny-0123456789abcdef-float16"),
        entry_key("a" * 64, frame={**frame, "view": 1}, features="tiny-0123456789abcdef-float16"),
        entry_key("a" * 64, frame=frame, features="tiny-0123456789abcdef-float32"),  # other storage dtype
        entry_key("a" * 64, frame=frame, features="tiny-fedcba9876543210-float16"),  # other encoder
        entry_key("a" * 64, frame=frame, features=None),  # the item without features
    ]
    assert len({key, *others}) == 1 + len(others) and all(len(k) == 64 for k in others)


# --- the damage rule -------------------------------------------------------------------------------------------


def damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":
        data[-100] ^= 0xFF  # inside the targets: only the checksum sees it
    elif how == "header":
        data = bytearray(b"{not json" + bytes(data[9:]))
    elif how == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "flipped", "header", "empty", "garbage"])
def test_a_damaged_entry_raises_on_read_and_is_one_line_for_a_dataset(tmp_path, how):
    Store(root=tmp_path).write(KEY, prepared(), features=None)
    damage(Store(root=tmp_path).path(KEY), how)
    store = Store(root=tmp_path)  # another process: nothing verified yet
    with pytest.raises(DamagedEntry):
        store.read(KEY)
    with pytest.raises(SamlitError) as error:
        store.get(KEY, what="item stampDS-00001 (instance 1, view 0)")
    message = str(error.value)
    assert message.startswith(f"item stampDS-00001 (instance 1, view 0): store entry {store.path(KEY)} is damaged")
    assert "python prepare.py" in message and "\n" not in message


def test_a_missing_entry_is_none_and_one_line_naming_the_prepare_stage(tmp_path):
    store = Store(root=tmp_path)
    assert store.read(KEY) is None
    with pytest.raises(SamlitError) as error:
        store.get(KEY, what="item k")
    message = str(error.value)
    assert message.startswith(f"item k is not prepared ({store.path(KEY)} is missing)")
    assert "python prepare.py" in message and "\n" not in message


def test_an_entry_is_hashed_on_its_first_read_in_a_process_only(tmp_path, monkeypatch):
    """Every epoch reads every entry: the SHA-256 runs once per entry and process (not for what it wrote)."""
    hashed = []
    payload_sha256 = store_module.payload_sha256
    monkeypatch.setattr(store_module, "payload_sha256", lambda t: hashed.append(1) or payload_sha256(t))
    writer = Store(root=tmp_path)
    writer.write(KEY, prepared(), features=None)
    assert len(hashed) == 1  # the checksum written into the entry
    writer.read(KEY)
    assert len(hashed) == 1  # what this process wrote is whole
    reader = Store(root=tmp_path)  # another process
    for _ in range(3):
        assert reader.read(KEY).key == "stampDS-00001-s1"
    assert len(hashed) == 2  # its first read only
    path = reader.path(KEY)
    path.write_bytes(path.read_bytes()[:1000])  # a truncation is still seen on a later read: it does not parse
    with pytest.raises(DamagedEntry, match="unreadable"):
        reader.read(KEY)


def test_a_pickled_store_keeps_what_it_verified_and_a_memory_folder_is_removed_with_its_store(tmp_path):
    """Loader workers carry the store; a ``memory`` store's folder goes when the process that made it ends."""
    memory = Store(mode="memory")
    root = memory.root
    memory.write(KEY, prepared(), features=None)
    assert root.is_dir() and root != tmp_path
    copy = pickle.loads(pickle.dumps(memory))  # a worker's copy: reads the same folder, never removes it
    assert copy.read(KEY).key == "stampDS-00001-s1" and KEY in copy._verified
    del copy
    gc.collect()
    assert root.is_dir()
    del memory
    gc.collect()
    assert not root.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "ram", "root": "x"}, r"cache\.mode='ram' is not one of disk, memory, none"),
        ({"mode": "disk", "root": "x", "dtype": "int8"}, r"cache\.dtype='int8' is not one of float16"),
        ({"mode": "disk", "root": "x", "device": "tpu"}, r"cache\.device='tpu' is not one of auto, cpu, cuda"),
        ({"mode": "disk"}, r"cache\.root is not set"),
    ],
)
def test_bad_store_settings_are_one_line(kwargs, message):
    with pytest.raises(SamlitError, match=message):
        Store(**kwargs)


def test_an_unwritable_or_unreadable_store_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = Store(root=blocker / "store")
    with pytest.raises(SamlitError, match=r"cannot write the store at .*a-file.*paths\.cache_dir"):
        store.write(KEY, prepared(), features=None)
    folder = Store(root=tmp_path / "store")
    folder.path(KEY).mkdir(parents=True)  # a folder where the entry should be
    with pytest.raises(SamlitError, match=r"cannot read the store at .*paths\.cache_dir"):
        folder.read(KEY)


def test_a_full_disk_is_one_line_naming_the_entry_and_the_fix(tmp_path, monkeypatch):
    import errno

    from samlit.core import atomic

    def full(path, data):
        raise atomic.write_error(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(atomic, "write_bytes", full)
    store = Store(root=tmp_path)
    with pytest.raises(SamlitError) as error:
        store.write(KEY, prepared(), features=None)
    message = str(error.value)
    assert message.startswith(f"cannot write the store at {store.path(KEY)}: No space left on device")
    assert "paths.cache_dir" in message and "\n" not in message


def _write_many(root: str, rounds: int) -> None:
    store = Store(root=root)
    item = prepared(features={"embedding": torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))})
    for _ in range(rounds):
        store.write(KEY, item, features="tiny-0123456789abcdef-float16")


@pytest.mark.slow
def test_two_processes_writing_one_entry_leave_a_whole_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path), 40)) for _ in range(2)]
    for writer in writers:
        writer.start()
    path, reads = Store(root=tmp_path).path(KEY), 0
    while any(w.is_alive() for w in writers):
        if path.exists():  # every read while both write must see a whole entry
            decode(path.read_bytes())
            reads += 1
    assert all(w.exitcode == 0 for w in writers)
    expected = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(decode(path.read_bytes()).features["embedding"], expected)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
    assert reads > 0


# --- the store under a datamodule: prepare() writes, the datasets read -----------------------------------------


class FakeEncoder:
    """Stands in for the frozen image encoder in ``prepare()`` (the tiny SAM's takes seconds per image on a CPU):
    a (1, 256, 64, 64) embedding that is a function of the frame image alone; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sam, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        seed = int(image_digest(image)[:8], 16)
        return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def encoder(monkeypatch) -> FakeEncoder:
    fake = FakeEncoder()
    monkeypatch.setattr("samlit.run.prepare.encode_features", lambda sam, image: {"embedding": fake(sam, image)})
    return fake


class CountingReads:
    """Wraps a source's ``read``: counts the images decoded (set before any dataset is made)."""

    def __init__(self, dm):
        self.calls, self.read = 0, dm.source.read
        dm.source.read = self

    def __call__(self, record):
        self.calls += 1
        return self.read(record)


def job(compose_cfg, *overrides):
    """What train.py builds (data split, tiny SAM, CPU trainer), without loggers."""
    return setup(compose_cfg(*FAST, "data.num_workers=0", *overrides), with_loggers=False, needs=())


def run_prepare(job, **kwargs):
    return prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, **kwargs)


def datamodule(compose_cfg, *overrides):
    dm = build_datamodule(compose_cfg(*FAST, "data.num_workers=0", *overrides).data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def items(dm, split="train", *, train=True, epoch=3):
    dataset = dm.dataset(split, train=train)
    return [dataset[(epoch, i)] for i in range(len(dataset))]


def assert_same_items(stored, read):
    """Groups read from the store == groups made from the files, but for embedding (store) vs image (files)."""
    assert len(stored) == len(read) > 0
    for got, want in zip(stored, read, strict=True):
        assert "image" not in got and got["image_digest"] == image_digest(want["image"])
        assert got["embedding"].shape == (1, 256, 64, 64) and got["embedding"].dtype == torch.float16
        assert set(got) - {"embedding"} == set(want) - {"image"}
        for key, value in want.items():
            if key == "image":
                continue
            if isinstance(value, PackedMasks):
                assert np.array_equal(np.asarray(got[key]), np.asarray(value)), key
            elif isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), key
            else:
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
def test_a_warm_store_serves_the_same_items_without_reading_an_image(compose_cfg, encoder, overrides):
    from_files = datamodule(compose_cfg, *overrides, "cache=none")
    assert from_files.store is None
    warm = job(compose_cfg, *overrides)
    dm = warm.datamodule
    reads = CountingReads(dm)
    stats = run_prepare(warm)
    planned = dm.planned()
    views = 1 + dm.num_views
    assert (
        stats.entries == len(planned) == views * len(dm.items("train")) + len(dm.items("val")) + len(dm.items("test"))
    )
    assert stats.made == stats.encoded == encoder.calls == reads.calls == len(planned) and stats.found == 0
    assert stats.bytes_written == sum(dm.store.path(key).stat().st_size for _, _, key, _ in planned)
    assert dm.features.startswith("tiny-") and dm.features.endswith("-float16")

    reads.calls = 0
    for split, train in (("train", True), ("val", False), ("test", False)):
        assert_same_items(items(dm, split, train=train), items(from_files, split, train=train))
    assert reads.calls == 0  # not one image read

    again = run_prepare(job(compose_cfg, *overrides))  # another run over the same store: reads, makes nothing
    assert (again.found, again.made, again.damaged) == (len(planned), 0, 0) and encoder.calls == len(planned)


def test_a_loader_over_an_unprepared_store_names_the_prepare_stage(compose_cfg):
    dm = datamodule(compose_cfg)
    assert dm.store is not None and dm.features is None  # prepare() sets the features tag
    with pytest.raises(SamlitError) as error:
        next(iter(dm.val_dataloader()))
    assert "is not prepared" in str(error.value) and "python prepare.py" in str(error.value)
    assert "\n" not in str(error.value)


def test_cache_none_prepares_nothing_and_groups_carry_their_image(compose_cfg, encoder, tmp_path):
    none = job(compose_cfg, "cache=none")
    stats = run_prepare(none)
    assert none.datamodule.store is None and stats.entries == stats.made == encoder.calls == 0
    assert not (tmp_path / "cache" / "store").exists()
    group = next(iter(none.datamodule.val_dataloader()))[0]
    assert "embedding" not in group and group["image"].dtype == torch.uint8 and max(group["image"].shape) == 1024
    assert group["masks"].dtype == torch.bool  # unpacked by the collate


def test_cache_memory_prepares_into_a_folder_of_its_own(compose_cfg, encoder, tmp_path):
    memory = job(compose_cfg, "cache=memory")
    store = memory.datamodule.store
    assert store.mode == "memory" and tmp_path not in store.root.parents
    stats = run_prepare(memory)
    assert stats.made == len(list(store.root.rglob("*.safetensors"))) > 0
    group = next(iter(memory.datamodule.val_dataloader()))[0]
    assert group["embedding"].shape == (1, 256, 64, 64) and "image" not in group


def record_keys(dm) -> dict[str, set[str]]:
    """Entry keys of every planned item, by the image key they come from."""
    keys: dict[str, set[str]] = {}
    for split, spec, key, _ in dm.planned():
        keys.setdefault(dm.splits[split][spec.record].key, set()).add(key)
    return keys


def all_keys(dm) -> set[str]:
    return {key for keys in record_keys(dm).values() for key in keys}


def test_the_keys_follow_the_files_and_the_settings(compose_cfg):
    first = datamodule(compose_cfg, "data.augment.views=1")
    keys = record_keys(first)
    record = first.splits["train"][0]

    # touched, same content: the same keys (the content is hashed again, the key does not move)
    stamp = os.stat(record.scan).st_mtime_ns + 10**9
    os.utime(record.scan, ns=(stamp, stamp))
    assert record_keys(datamodule(compose_cfg, "data.augment.views=1")) == keys

    # a changed ground truth: that image's keys move, no other
    gt = cv2.imread(str(record.pixel_gt), cv2.IMREAD_GRAYSCALE)
    gt[0, 0] = 255 - gt[0, 0]
    cv2.imwrite(str(record.pixel_gt), gt)
    edited = record_keys(datamodule(compose_cfg, "data.augment.views=1"))
    assert not edited[record.key] & keys[record.key]
    assert all(edited[k] == keys[k] for k in keys if k != record.key)

    # another frame, another source setting, another features tag: every key moves
    base = all_keys(datamodule(compose_cfg, "data.augment.views=1"))
    for overrides in (["data.crop_margin=0.3"], ["data.crop=none"], ["data.min_region_area=17"]):
        assert not all_keys(datamodule(compose_cfg, "data.augment.views=1", *overrides)) & base, overrides
    tagged = datamodule(compose_cfg, "data.augment.views=1")
    tagged.features = "tiny-0123456789abcdef-float16"
    assert not all_keys(tagged) & base

    # other augmentation: the augmented views' keys move, the images' own (view 0) do not
    views = datamodule(compose_cfg, "data.augment.views=1", "data.augment.seed=5")
    moved = [
        (v0 == w0, v1 == w1)
        for (v0, v1), (w0, w1) in zip(
            datamodule(compose_cfg, "data.augment.views=1").entry_keys("train", train=True),
            views.entry_keys("train", train=True),
            strict=True,
        )
    ]
    assert moved and all(same0 and not same1 for same0, same1 in moved)


def test_prepare_remakes_the_items_of_a_changed_file_only(compose_cfg, encoder):
    first = job(compose_cfg)
    run_prepare(first)
    record = first.datamodule.splits["train"][0]
    before = {g["key"]: np.asarray(g["masks"]).sum() for g in items(first.datamodule)}

    gt = cv2.imread(str(record.pixel_gt), cv2.IMREAD_GRAYSCALE)
    ink = np.argwhere(gt == 0)
    gt[tuple(ink[: len(ink) // 2].T)] = 255  # half the ink is gone
    cv2.imwrite(str(record.pixel_gt), gt)
    edited = job(compose_cfg)
    reads = CountingReads(edited.datamodule)
    stats = run_prepare(edited)
    changed = [k for k in before if k.rsplit("-s", 1)[0] == record.key]
    assert stats.made == reads.calls == len(changed) > 0 and stats.found == stats.entries - len(changed)
    after = {g["key"]: np.asarray(g["masks"]).sum() for g in items(edited.datamodule)}
    assert all(after[k] < before[k] for k in changed) and all(after[k] == before[k] for k in before if k not in changed)


def test_prepare_logs_a_damaged_entry_and_makes_it_again(compose_cfg, encoder, caplog):
    first = job(compose_cfg)
    run_prepare(first)
    good = items(first.datamodule)
    dm = first.datamodule
    entries = sorted(dm.store.path(key) for _, _, key, _ in dm.planned())
    damage(entries[0], "flipped")

    again = job(compose_cfg)  # another process: nothing verified yet
    with caplog.at_level(logging.WARNING):
        stats = run_prepare(again)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "damaged" in r.getMessage()]
    assert warnings == [f"store: {entries[0]} is damaged (checksum mismatch); preparing it again"]
    assert (stats.damaged, stats.made, stats.found) == (1, 1, stats.entries - 1)
    assert decode(entries[0].read_bytes()) is not None  # rewritten whole
    for a, b in zip(good, items(again.datamodule), strict=True):
        assert torch.equal(a["low_res_targets"], b["low_res_targets"]) and torch.equal(a["embedding"], b["embedding"])


def test_worker_batches_arrive_as_tensors_equal_to_in_process_ones(compose_cfg, encoder):
    prepared_job = job(compose_cfg, "data.num_workers=2")
    run_prepare(prepared_job)
    dm = prepared_job.datamodule
    in_process = datamodule(compose_cfg)
    in_process.features = dm.features
    for loader in ("val_dataloader", "train_dataloader"):  # DataLoader; StatefulDataLoader (epoch 0)
        want = [group for batch in getattr(in_process, loader)() for group in batch]
        got = [group for batch in getattr(dm, loader)() for group in batch]
        assert type(got[0]) is dict and got[0]["masks"].dtype == torch.bool
        assert got[0]["embedding"].dtype == torch.float16
        assert len(got) == len(want) > 0
        for a, b in zip(got, want, strict=True):
            assert a.keys() == b.keys()
            for key, value in b.items():
                assert torch.equal(a[key], value) if isinstance(value, torch.Tensor) else a[key] == value


def test_a_worker_hands_the_embedding_over_as_where_it_lies_in_its_file(tmp_path):
    store = Store(root=tmp_path / "store")
    embedding = torch.randn(1, 256, 64, 64).to(torch.float16)
    store.write("ab" * 32, prepared(features={"embedding": embedding}), features="tag")
    item = store.read("ab" * 32, map_features=True)
    handle = item.features["embedding"]
    assert isinstance(handle, MappedTensor) and len(pickle.dumps(handle)) < 1024  # not 2 MiB through the pipe
    loaded = handle.load()
    assert loaded.dtype == torch.float16 and torch.equal(loaded, embedding)
    assert torch.equal(unpacked({"embedding": handle})["embedding"], embedding)
    loaded += 1  # copy-on-write: the entry on disk is unchanged
    assert torch.equal(store.read("ab" * 32).features["embedding"], embedding)


# --- info and clear (python -m samlit.cache / samlit cache) -----------------------------------------------------


def filled(root) -> Store:
    store = Store(root=root)
    tag = "tiny-0123456789abcdef-float16"
    for key in ("ab" * 32, "cd" * 32):
        store.write(
            key, prepared(features={"embedding": torch.zeros(1, 256, 64, 64, dtype=torch.float16)}), features=tag
        )
    store.write("ef" * 32, prepared(), features=None)  # an item prepared without features
    (root / "files.json").write_text("{}")
    return store


def test_info_counts_entries_by_features_and_damaged_ones(tmp_path):
    store = filled(tmp_path / "store")
    info = store_info(store.root)
    assert info["entries"] == 3 and info["damaged"] is None
    assert info["by_features"] == {"": 1, "tiny-0123456789abcdef-float16": 2}
    assert info["bytes"] == sum(p.stat().st_size for p in store.root.rglob("*.safetensors"))
    damage(store.path("ab" * 32), "flipped")
    assert store_info(store.root, verify=True)["damaged"] == 1
    assert store_info(tmp_path / "nothing-here") == {"entries": 0, "bytes": 0, "by_features": {}, "damaged": None}


def test_clear_one_features_tag_or_everything_the_store_wrote(tmp_path):
    store = filled(tmp_path / "store")
    mine = store.root / "ab" / "notes.txt"
    mine.write_text("mine")
    assert clear_store(store.root, features="tiny-0123456789abcdef-float16") == (2, [])
    assert store.read("ab" * 32) is None and store.read("ef" * 32) is not None
    removed, kept = clear_store(store.root)
    assert removed == 1 and kept == [store.root / "ab", mine]
    assert sorted(p.name for p in store.root.rglob("*")) == ["ab", "notes.txt"]  # nothing the store did not write


def test_cache_cli_info_and_clear(tmp_path, capsys):
    from samlit.launch.cache_cli import cli

    store = filled(tmp_path / "store")
    damage(store.path("cd" * 32), "truncated")
    assert cli(["info", "--dir", str(store.root), "--verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{store.root}: 3 entries, ") and out[0].endswith(", 1 damaged")
    assert "  items only (no features): 1 entries" in out and "  tiny-0123456789abcdef-float16: 2 entries" in out
    assert cli(["clear", "--dir", str(store.root), "--features", "tiny-fedcba9876543210-float16"]) == 2  # not there
    assert "no entries with features tiny-fedcba9876543210-float16" in capsys.readouterr().err
    assert cli(["clear", "--dir", str(store.root), "--features", "tiny-0123456789abcdef-float16"]) == 0
    assert capsys.readouterr().out.strip() == f"removed 2 entries from {store.root}"
    assert store.read("ef" * 32) is not None
    assert cli(["clear", "--dir", str(store.root)]) == 0
    assert not store.root.exists()  # everything in it was the store's
    (tmp_path / "a-file").write_text("x")
    for bad, problem in ((tmp_path / "missing", "does not exist"), (tmp_path / "a-file", "is not a folder")):
        assert cli(["info", "--dir", str(bad)]) == 2
        assert capsys.readouterr().err.startswith(f"error: --dir {bad} {problem}")

"""The store: every prepared item of a run, and what the frozen model makes of it, in one content-addressed folder.

``python prepare.py`` (``samlit.run.prepare``) fills it; the datasets only read it. An entry is one item (a page,
or one instance's crop, in one augmentation view) as one safetensors file ``<root>/<2 hex>/<key>.safetensors``:

```
tensors   boxes (N, 4) float32 | low_res_targets (N, 256, 256) float32 | sizes (H, W, h, w) int64
          | windows (N, 4) int64 + bits (B,) uint8 + offsets (N + 1,) int64: the instance masks, each as the
            packed bits of its own bounding window | crop_box (4,) int64 (crop mode)
          | embedding (1, 256, 64, 64) <cache.dtype> and any later feature of the frozen model
metadata  key, image_digest, features (<fingerprint>-<dtype> or ""), sha256 of the tensors
```

One key scheme (``entry_key``): the SHA-256 of the record's identity (its files' content and the source's other
inputs), the item's frame (instance, crop margin, view, augmentation pipeline), the frozen model's features tag
(``<encoder fingerprint>-<dtype>``; ``None`` for an item prepared without features) and ``STORE_VERSION``. Any
change gives another key, never a stale entry; an entry nobody asks for any more is only disk space.

One damage rule: writes are atomic (temp file + rename); the first read of an entry in a process checks its
SHA-256 (later reads parse it only). The prepare stage reads every entry of the run once, so a truncated or altered
entry is logged in one line and prepared again there; a reader that meets one later raises a one-line error that
names it and ``python prepare.py``.

``mode``: ``disk`` (persistent, shared by runs, sweep jobs and DDP ranks), ``memory`` (a temporary folder this
process removes when it ends), ``none`` (nothing prepared: items are read from their files and the encoder runs at
every step, the benchmarks' baseline). ``python -m samlit.cache info|clear`` (or ``samlit cache``) inspects it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from samlit.core import atomic, fan_out
from samlit.core.digests import tensor_bytes
from samlit.core.errors import SamlitError
from samlit.data.sample import tight_boxes

log = logging.getLogger(__name__)

STORE_VERSION = 2  # bump when what an entry holds, or how it is computed, changes
SUFFIX = ".safetensors"
FILE_INDEX = "files.json"  # FileDigests' index of the records' files
MODES = ("disk", "memory", "none")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DIR = Path(os.environ.get("SAMLIT_CACHE", "~/.cache/samlit")).expanduser() / "store"
READ_FIX = "point paths.cache_dir=... to a readable folder (or use cache=memory)"
WRITE_FIX = "free space or point paths.cache_dir=... to a writable folder (or use cache=memory)"
ITEM_TENSORS = ("boxes", "low_res_targets", "sizes", "windows", "bits", "offsets", "crop_box")


@dataclass
class PackedMasks:
    """(N, H, W) bool instance masks kept as the packed bits of each mask's bounding window: a page's masks are
    megabytes of mostly zeros. ``np.asarray(packed)`` (or ``unpack()``) gives the masks back.

    windows: (N, 4) int64 x0, y0, x1, y1 (each mask's tight box; zeros for an empty mask). bits: (B,) uint8, the
    windows' pixels packed one after the other. offsets: (N + 1,) int64 into ``bits``. size: (H, W).
    """

    windows: np.ndarray
    bits: np.ndarray
    offsets: np.ndarray
    size: tuple[int, int]

    @classmethod
    def pack(cls, masks: np.ndarray) -> PackedMasks:
        windows = tight_boxes(masks).astype(np.int64)  # each mask's tight box; zeros for an empty mask
        chunks = [np.packbits(mask[y0:y1, x0:x1]) for mask, (x0, y0, x1, y1) in zip(masks, windows, strict=True)]
        offsets = np.cumsum([0, *(len(c) for c in chunks)]).astype(np.int64)
        bits = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        return cls(windows=windows, bits=bits, offsets=offsets, size=(int(masks.shape[1]), int(masks.shape[2])))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.windows), *self.size)

    def __len__(self) -> int:
        return len(self.windows)

    def unpack(self) -> np.ndarray:
        masks = np.zeros(self.shape, bool)
        for i, (x0, y0, x1, y1) in enumerate(self.windows):
            if x1 > x0 and y1 > y0:
                count = int((x1 - x0) * (y1 - y0))
                window = np.unpackbits(self.bits[self.offsets[i] : self.offsets[i + 1]], count=count)
                masks[i, y0:y1, x0:x1] = window.reshape(y1 - y0, x1 - x0).view(bool)
        return masks

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        masks = self.unpack()
        return masks if dtype is None else masks.astype(dtype)


@dataclass(frozen=True)
class MappedTensor:
    """A tensor stored in an entry's file, handed from a loader worker to the main process as where it lies (file,
    byte offset, shape, dtype) instead of its bytes: ``load()`` maps it from the page cache (the worker has just
    read the file), so a 2 MiB embedding costs the hand-over neither a pickle through the pipe nor a shared-memory
    segment. A file replaced after the worker read it stays mapped as it was (renames keep the old inode)."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name

    def load(self) -> torch.Tensor:
        """The tensor, mapped copy-on-write (private, writable; nothing is written back)."""
        array = np.memmap(self.path, dtype=self.dtype, mode="c", offset=self.offset, shape=self.shape)
        return torch.from_numpy(array)


@dataclass
class PreparedItem:
    """One prepared item: what a step needs of it besides its prompts.

    key: ``<image key>`` or ``<image key>-s<i>``. image_digest: its frame image's ``image_digest``. boxes: (N, 4)
    float32 ground-truth boxes, xyxy pixels of the frame. masks: ``PackedMasks`` (N, H, W) at the frame's original
    resolution. low_res_targets: (N, 256, 256) float32. original_size (H, W), input_size (h, w). crop_box: where a
    crop sits on its page, ``None`` for a page. features: what the frozen model makes of the frame image
    (``embedding`` (1, 256, 64, 64)), empty for an item prepared without them.
    """

    key: str
    image_digest: str
    boxes: np.ndarray
    masks: PackedMasks
    low_res_targets: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    crop_box: tuple[int, int, int, int] | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)


def entry_key(identity: str, *, frame: dict[str, Any], features: str | None) -> str:
    """The key of one entry: the record's ``identity`` (``InstanceDataModule.identity``), the item's ``frame``
    (instance, margin, view, augmentation) and the ``features`` tag (``Store.features_tag``), with the version."""
    text = json.dumps(
        {"version": STORE_VERSION, "record": identity, "frame": frame, "features": features},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def encode(item: PreparedItem, *, features: str | None) -> bytes:
    """``item`` as the bytes of one entry (``features``: the tag its features were made under)."""
    masks = item.masks
    tensors = {
        "boxes": torch.from_numpy(np.ascontiguousarray(item.boxes, dtype=np.float32)).reshape(-1, 4),
        "low_res_targets": item.low_res_targets.contiguous(),
        "sizes": torch.tensor([*item.original_size, *item.input_size], dtype=torch.int64),
        "windows": torch.from_numpy(masks.windows),
        "bits": torch.from_numpy(masks.bits),
        "offsets": torch.from_numpy(masks.offsets),
        **{name: value.contiguous() for name, value in item.features.items()},
    }
    if item.crop_box is not None:
        tensors["crop_box"] = torch.tensor(item.crop_box, dtype=torch.int64)
    metadata = {
        "key": item.key,
        "image_digest": item.image_digest,
        "features": features or "",
        "sha256": payload_sha256(tensors),
    }
    return safetensors.torch.save(tensors, metadata=metadata)


class DamagedEntry(Exception):
    """An entry on disk that is not a whole, unaltered prepared item."""


def read_metadata(data: bytes) -> dict[str, str]:
    header_size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_size])["__metadata__"]


def decode(data: bytes, *, verify: bool = True, mapped_from: Path | None = None) -> PreparedItem:
    """Inverse of ``encode``; raises ``DamagedEntry`` when the file is truncated, altered (checked with
    ``verify``) or not an entry. With ``mapped_from`` (the file ``data`` was read from), the features come back as
    ``MappedTensor``s."""
    try:
        tensors = safetensors.torch.load(data)
        metadata = read_metadata(data)
        key, digest, expected = metadata["key"], metadata["image_digest"], metadata["sha256"]
        sizes = tensors["sizes"].tolist()
        windows, bits, offsets = (tensors[k].numpy() for k in ("windows", "bits", "offsets"))
        boxes, targets = tensors["boxes"], tensors["low_res_targets"]
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise DamagedEntry(f"unreadable ({reason})") from None
    if verify and payload_sha256(tensors) != expected:
        raise DamagedEntry("checksum mismatch")
    if len(sizes) != 4 or not (len(boxes) == len(targets) == len(windows) == len(offsets) - 1):
        raise DamagedEntry("inconsistent shapes")
    crop = tensors.get("crop_box")
    return PreparedItem(
        key=key,
        image_digest=digest,
        boxes=boxes.numpy(),
        masks=PackedMasks(windows=windows, bits=bits, offsets=offsets, size=(sizes[0], sizes[1])),
        low_res_targets=targets,
        original_size=(sizes[0], sizes[1]),
        input_size=(sizes[2], sizes[3]),
        crop_box=tuple(crop.tolist()) if crop is not None else None,
        features={
            k: v if mapped_from is None else mapped(data, k, v, path=mapped_from)
            for k, v in tensors.items()
            if k not in ITEM_TENSORS
        },
    )


def mapped(data: bytes, name: str, tensor: torch.Tensor, *, path: Path) -> MappedTensor:
    """Where tensor ``name`` of the safetensors bytes ``data`` (read from ``path``) lies in that file."""
    header_size = int.from_bytes(data[:8], "little")
    start, _ = json.loads(data[8 : 8 + header_size])[name]["data_offsets"]
    dtype = str(tensor.numpy().dtype) if tensor.dtype != torch.bfloat16 else None
    if dtype is None:
        raise DamagedEntry(f"{name}: bfloat16 cannot be mapped")
    return MappedTensor(path=str(path), offset=8 + header_size + start, shape=tuple(tensor.shape), dtype=dtype)


class Store:
    """Prepared entries under ``root`` (``<paths.cache_dir>/store``), by ``entry_key``; the ``cache`` config group.

    Args:
        mode: ``disk`` | ``memory`` | ``none`` (module docstring).
        root: the folder (``disk``); ``memory`` makes a temporary one, removed when this process ends.
        dtype: storage dtype of the frozen model's features (``float16`` halves the bytes; round-off: README).
        device: where a run keeps its prepared embeddings during training: ``cpu`` (read by the loaders, pinned,
            copied per step), ``cuda`` (all of them in GPU memory once, a step is the decoder alone) or ``auto``
            (``cuda`` when training on a GPU and they fit, ``samlit.run.resident``).

    Picklable: loader workers carry it (a ``memory`` store's folder is removed by the process that made it only).
    """

    def __init__(
        self, *, mode: str = "disk", root: str | Path | None = None, dtype: str = "float16", device: str = "auto"
    ) -> None:
        for key, value, allowed in (("mode", mode, MODES), ("dtype", dtype, DTYPES), ("device", device, DEVICES)):
            if value not in allowed:
                raise SamlitError(f"cache.{key}={value!r} is not one of {', '.join(allowed)}")
        if mode == "disk" and root is None:
            raise SamlitError("cache.root is not set: give a folder (paths.cache_dir) or use cache=memory")
        self.mode, self.dtype, self.device = mode, dtype, device
        self._cleanup = None
        if mode == "memory":
            root = tempfile.mkdtemp(prefix="samlit-store-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        self.root = Path(root).expanduser() if root is not None else None
        self._verified: set[str] = set()  # entries this process has read whole (SHA-256 checked)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cleanup": None}

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def features_tag(self, fingerprint: str) -> str:
        """``<fingerprint>-<dtype>``: what an entry's features were made by and stored as."""
        return f"{fingerprint}-{self.dtype}"

    def path(self, key: str) -> Path:
        return fan_out.entry_path(self.root, key, suffix=SUFFIX)

    def read(self, key: str, *, map_features: bool = False) -> PreparedItem | None:
        """The entry ``key`` (``None`` when it is not there). Its SHA-256 is checked on this process's first read
        only; raises ``DamagedEntry`` for an entry that fails that or does not parse. ``map_features``: its
        features as ``MappedTensor``s (what a loader worker hands over)."""
        path = self.path(key)
        data = atomic.read_if_present(path, what="store", fix=READ_FIX)
        if data is None:
            return None
        mapped_from = path if map_features and self.dtype != "bfloat16" else None
        item = decode(data, verify=key not in self._verified, mapped_from=mapped_from)
        self._verified.add(key)
        return item

    def get(self, key: str, *, what: str, map_features: bool = False) -> PreparedItem:
        """``read`` for a dataset: a missing or damaged entry is a one-line ``SamlitError`` naming ``what`` and the
        prepare stage."""
        try:
            item = self.read(key, map_features=map_features)
        except DamagedEntry as error:
            raise SamlitError(
                f"{what}: store entry {self.path(key)} is damaged ({error}); run python prepare.py with the same "
                "overrides (it rebuilds damaged entries)"
            ) from None
        if item is None:
            raise SamlitError(
                f"{what} is not prepared ({self.path(key)} is missing): run python prepare.py with the same "
                "overrides (train.py and eval.py run it first)"
            )
        return item

    def write(self, key: str, item: PreparedItem, *, features: str | None) -> int:
        """Write ``item`` atomically (concurrent writers each leave a whole file); returns the bytes written."""
        data = encode(item, features=features)
        atomic.write_entry(self.path(key), data, what="store", fix=WRITE_FIX)
        self._verified.add(key)
        return len(data)


def store_info(root: Path, *, verify: bool = False) -> dict[str, Any]:
    """What is under ``root``: ``entries``, ``bytes``, entries per features tag (``by_features``; ``""`` = items
    prepared without features) and, with ``verify``, ``damaged`` entries."""
    paths = fan_out.entries(Path(root), suffix=SUFFIX)
    tags: Counter[str] = Counter()
    damaged = 0
    for path in paths:
        data = path.read_bytes() if verify else path.open("rb").read(1 << 16)
        try:
            tags[read_metadata(data).get("features", "")] += 1
            if verify:
                decode(data)
        except (DamagedEntry, ValueError, KeyError, TypeError):
            damaged += 1
    return {
        "entries": len(paths),
        "bytes": sum(p.stat().st_size for p in paths),
        "by_features": dict(sorted(tags.items())),
        "damaged": damaged if verify else None,
    }


def clear_store(root: Path, *, features: str | None = None) -> tuple[int, list[Path]]:
    """Delete what the store wrote under ``root`` (every entry, or with ``features`` only the entries of that tag,
    their temp files, the file index) and the fan-out folders that become empty. Returns (entries removed, what was
    left because the store did not write it)."""
    root = Path(root)
    paths = fan_out.entries(root, suffix=SUFFIX)
    if features is None:
        return len(paths), fan_out.remove_written(root, suffix=SUFFIX, also=(FILE_INDEX,))
    removed = 0
    for path in paths:
        try:
            tag = read_metadata(path.open("rb").read(1 << 16)).get("features", "")
        except (ValueError, KeyError, TypeError):
            continue
        if tag == features:
            path.unlink(missing_ok=True)
            removed += 1
    return removed, []

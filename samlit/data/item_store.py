"""Prepared items: what a step needs of an item, computed once from its files and stored next to the embeddings,
so that with a warm cache the loaders decode no image at all.

An item (one page, or one stamp's crop, in one augmentation view) is prepared once: its frame's ``image_digest``
(the embedding cache's key for it), its boxes, its low-res targets (N, 256, 256) and its instance masks at the
frame's original resolution, each kept as packed bits of its own bounding window. The prompts, which are drawn
afresh every epoch (jitter, points), are not stored: they are drawn from the stored boxes and masks.

An entry is one safetensors file (``<root>/<2 hex>/<key>.safetensors``) named by ``item_key``: the SHA-256 of
the record's files' content (``samlit.core.digests.FileDigests``: hashed once, then known by size + mtime), of
everything else the source reads the record with (its settings, a COCO image's annotations), and of the item's
frame (stamp, crop margin, view and the augmentation pipeline that makes it) and ``STORE_VERSION``. Changing any
of them gives another key; an entry nobody asks for any more is only disk space (``python -m samlit.cache
clear`` removes them). Writes are atomic; the metadata carries a SHA-256 of the tensors, so a truncated or
altered entry is logged once and prepared again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from samlit.core import atomic, fan_out
from samlit.core.digests import tensor_bytes
from samlit.data.sample import tight_boxes

log = logging.getLogger(__name__)

STORE_VERSION = 1  # bump when what an item holds, or how it is computed, changes
ENTRY_SUFFIX = ".safetensors"
FILE_INDEX = "files.json"  # FileDigests' index of the records' files
READ_FIX = "point paths.cache_dir=... to a readable folder (or use cache=memory)"
WRITE_FIX = "free space or point paths.cache_dir=... to a writable folder (or use cache=memory)"


@dataclass
class PreparedItem:
    """What a step needs of one item besides its prompts.

    key: the item's key (``<scan>`` or ``<scan>-s<i>``). image_digest: the frame image's ``image_digest``.
    boxes: (N, 4) float32 ground-truth boxes, xyxy pixels of the frame. masks: (N, H, W) bool at the frame's
    original resolution. low_res_targets: (N, 256, 256) float32. original_size (H, W), input_size (h, w).
    crop_box: where a crop sits on the page (x0, y0, x1, y1), ``None`` for a page.
    """

    key: str
    image_digest: str
    boxes: np.ndarray
    masks: np.ndarray
    low_res_targets: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    crop_box: tuple[int, int, int, int] | None = None


def item_key(record: str, **frame: Any) -> str:
    """The store key of one item: ``record`` (the record's identity: its files' content and the source's other
    inputs, ``StampDataModule._stored``) and its frame (stamp, margin, view, augmentation), with ``STORE_VERSION``."""
    text = json.dumps({"version": STORE_VERSION, "record": record, **frame}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def pack_masks(masks: np.ndarray) -> dict[str, torch.Tensor]:
    """(N, H, W) bool -> ``windows`` (N, 4) int64 x0, y0, x1, y1 (each mask's tight box, ``tight_boxes``; zeros
    for an empty mask), ``bits`` (B,) uint8 (the windows' pixels, packed, one after the other) and ``offsets``
    (N + 1,) int64 into ``bits``."""
    windows = tight_boxes(masks).astype(np.int64)
    chunks = [np.packbits(mask[y0:y1, x0:x1]) for mask, (x0, y0, x1, y1) in zip(masks, windows, strict=True)]
    offsets = np.cumsum([0, *(len(c) for c in chunks)]).astype(np.int64)
    bits = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return {"windows": torch.from_numpy(windows), "bits": torch.from_numpy(bits), "offsets": torch.from_numpy(offsets)}


def unpack_masks(windows: np.ndarray, bits: np.ndarray, offsets: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """Inverse of ``pack_masks``: (N, H, W) bool of ``size`` (H, W)."""
    masks = np.zeros((len(windows), *size), bool)
    for i, (x0, y0, x1, y1) in enumerate(windows):
        if x1 > x0 and y1 > y0:
            count = int((x1 - x0) * (y1 - y0))
            window = np.unpackbits(bits[offsets[i] : offsets[i + 1]], count=count)
            masks[i, y0:y1, x0:x1] = window.reshape(y1 - y0, x1 - x0).view(bool)
    return masks


def payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def encode_item(item: PreparedItem) -> bytes:
    tensors = {
        "boxes": torch.from_numpy(np.ascontiguousarray(item.boxes, dtype=np.float32)).reshape(-1, 4),
        "low_res_targets": item.low_res_targets.contiguous(),
        "sizes": torch.tensor([*item.original_size, *item.input_size], dtype=torch.int64),
        **pack_masks(item.masks),
    }
    if item.crop_box is not None:
        tensors["crop_box"] = torch.tensor(item.crop_box, dtype=torch.int64)
    metadata = {"key": item.key, "image_digest": item.image_digest, "sha256": payload_sha256(tensors)}
    return safetensors.torch.save(tensors, metadata=metadata)


class CorruptItem(Exception):
    """An entry on disk that is not a whole, unaltered prepared item."""


def decode_item(data: bytes) -> PreparedItem:
    """Inverse of ``encode_item``; raises ``CorruptItem`` when the file is truncated, altered or not an item."""
    try:
        tensors = safetensors.torch.load(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_size])["__metadata__"]
        key, digest, expected = metadata["key"], metadata["image_digest"], metadata["sha256"]
        sizes = tensors["sizes"].tolist()
        windows, bits, offsets = (tensors[k].numpy() for k in ("windows", "bits", "offsets"))
        boxes, targets = tensors["boxes"], tensors["low_res_targets"]
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise CorruptItem(f"unreadable ({reason})") from None
    if payload_sha256(tensors) != expected:
        raise CorruptItem("checksum mismatch")
    if len(sizes) != 4 or not (len(boxes) == len(targets) == len(windows) == len(offsets) - 1):
        raise CorruptItem("inconsistent shapes")
    crop = tensors.get("crop_box")
    return PreparedItem(
        key=key,
        image_digest=digest,
        boxes=boxes.numpy(),
        masks=unpack_masks(windows, bits, offsets, size=(sizes[0], sizes[1])),
        low_res_targets=targets,
        original_size=(sizes[0], sizes[1]),
        input_size=(sizes[2], sizes[3]),
        crop_box=tuple(crop.tolist()) if crop is not None else None,
    )


class ItemStore:
    """Prepared items on disk under ``root`` (``<paths.cache_dir>/items``), by ``item_key``.

    ``get`` returns ``None`` for a missing entry and for a damaged one (logged; it is prepared again and
    rewritten); ``put`` writes atomically, so concurrent writers (loader workers, DDP ranks) each leave a whole
    file. Picklable: loader workers carry it.
    """

    def __init__(self, *, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return fan_out.entry_path(self.root, key, suffix=ENTRY_SUFFIX)

    def get(self, key: str) -> PreparedItem | None:
        path = self.path(key)
        data = atomic.read_if_present(path, what="item store", fix=READ_FIX)
        if data is None:
            return None
        try:
            return decode_item(data)
        except CorruptItem as error:
            log.warning("item store: %s is damaged (%s); preparing it again", path, error)
            return None

    def put(self, key: str, item: PreparedItem) -> None:
        atomic.write_entry(self.path(key), encode_item(item), what="item store", fix=WRITE_FIX)


def store_size(root: Path) -> tuple[int, int]:
    """(entries, bytes) of the item store under ``root`` (0, 0 when there is none)."""
    entries = fan_out.entries(Path(root), suffix=ENTRY_SUFFIX)
    return len(entries), sum(e.stat().st_size for e in entries)


def clear_store(root: Path) -> list[Path]:
    """Delete what the store wrote under ``root`` (entries, their temp files, the file index) and the fan-out folders
    that become empty. Returns what was left because the store did not write it."""
    return fan_out.remove_written(Path(root), suffix=ENTRY_SUFFIX, also=(FILE_INDEX,))

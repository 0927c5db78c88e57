"""Image embeddings, computed once: the encoder is frozen, so an embedding is a pure function of (encoder
weights, preprocessing, image pixels).

This module owns an entry's whole key: ``<fingerprint>-<dtype>/<sha256 of the pixels fed to the encoder>``.
The fingerprint hashes the encoder's weights, the model type, SAM's preprocessing constants and the autocast
dtype in force (``sam_fingerprint``); the pixel hash covers the image and its augmentation view. Other weights,
another model or another view can never read a stale entry.

``mode``: ``disk`` (persistent, shared by runs, sweep jobs and DDP ranks), ``memory`` (this process only),
``none`` (the encoder runs at every request, the seed tutorial's way; the benchmarks' baseline).

On disk an entry is one file: a JSON header line (dtype, shape, SHA-256 of the payload) then the raw tensor.
Writes are atomic (temp file + rename), so two processes writing the same entry both leave a whole file; a
truncated or altered entry fails its size/checksum test on read, is logged once and recomputed. A process
checks an entry's SHA-256 the first time it reads it; later reads in the same process check the header and
size only.

Inspect or clear it with ``python -m samlit.cache info|clear`` (``samlit.launch.cache_cli``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import nn

from samlit.core import atomic, fan_out
from samlit.core.digests import image_digest, tensor_bytes
from samlit.core.errors import SamlitError
from samlit.model.sam import detect_model_type

log = logging.getLogger(__name__)

MODES = ("disk", "memory", "none")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
ENTRY_SUFFIX = ".emb"
FOLDER_NAME = re.compile(r"[0-9a-f]{16}-(" + "|".join(DTYPES) + ")")  # <fingerprint>-<dtype>
DEFAULT_DIR = Path(os.environ.get("SAMLIT_CACHE", "~/.cache/samlit")).expanduser() / "embeddings"


def encoder_fingerprint(encoder: nn.Module, **context: object) -> str:
    """16 hex digits identifying an encoder: every weight (name, dtype, shape, bytes) and ``context``
    (model type, preprocessing constants, autocast dtype...). Hashing vit_h's 2.5 GB takes a few seconds."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()[:16]


def autocast_in_force(sam: Sam) -> str:
    """The autocast dtype on ``sam``'s device now (``"off"`` outside autocast): it changes the embeddings."""
    device = next(sam.image_encoder.parameters()).device.type
    return str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else "off"


def sam_fingerprint(sam: Sam) -> tuple[str, dict[str, object]]:
    """(fingerprint, context) of ``sam``'s image encoder as it runs now: its weights, model type, SAM's pixel
    mean/std and input size, and the autocast dtype in force on its device."""
    context = {
        "model_type": detect_model_type(sam.state_dict()) or type(sam.image_encoder).__name__,
        "img_size": sam.image_encoder.img_size,
        "pixel_mean": sam.pixel_mean.flatten().tolist(),
        "pixel_std": sam.pixel_std.flatten().tolist(),
        "autocast": autocast_in_force(sam),
    }
    return encoder_fingerprint(sam.image_encoder, **context), context


class CorruptEntry(Exception):
    """An entry on disk that is not a whole, unaltered embedding."""


def encode_entry(embedding: torch.Tensor) -> bytes:
    payload = bytes(tensor_bytes(embedding))
    header = {
        "dtype": str(embedding.dtype).removeprefix("torch."),
        "shape": list(embedding.shape),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return json.dumps(header).encode() + b"\n" + payload


def decode_entry(data: bytes, *, verify: bool = True) -> torch.Tensor:
    """Inverse of ``encode_entry``; raises ``CorruptEntry`` on a bad header, size or (with ``verify``) checksum."""
    line, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(line) if newline else None
        dtype = DTYPES[header["dtype"]]
        shape = [int(s) for s in header["shape"]]
        expected = header["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptEntry("unreadable header") from error
    size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if len(payload) != size:
        raise CorruptEntry(f"{len(payload)} payload bytes, expected {size} (truncated?)")
    if verify and hashlib.sha256(payload).hexdigest() != expected:
        raise CorruptEntry("checksum mismatch")
    flat = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    return flat.view(dtype).reshape(shape)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # encoder calls
    corrupt: int = 0  # entries found damaged and recomputed
    bytes_written: int = 0

    def line(self) -> str:
        return (
            f"{self.hits} hits, {self.misses} computed, {self.corrupt} corrupt entries rebuilt, "
            f"{self.bytes_written / 2**20:.1f} MiB written"
        )


class EmbeddingCache:
    """Image embeddings by (encoder fingerprint, image pixels).

    Args:
        mode: ``disk`` | ``memory`` | ``none`` (see the module docstring).
        root: folder of the disk cache (``paths.cache_dir``); one sub-folder per fingerprint and dtype.
        dtype: storage dtype of entries (``float16`` halves the bytes; embeddings come back as float32).
    """

    def __init__(self, *, mode: str = "disk", root: str | Path | None = None, dtype: str = "float16") -> None:
        if mode not in MODES:
            raise SamlitError(f"cache.mode={mode!r} is not one of {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise SamlitError(f"cache.dtype={dtype!r} is not one of {', '.join(DTYPES)}")
        if mode == "disk" and root is None:
            raise SamlitError("cache.root is not set: give a folder (paths.cache_dir) or use cache=memory")
        self.mode = mode
        self.root = Path(root).expanduser() if root is not None else None
        self.dtype = dtype
        self.stats = CacheStats()
        self._memory: dict[str, torch.Tensor] = {}
        # keys whose entry this process has read whole: later reads check the header and size, not the SHA-256 (the
        # hash of a 2 MiB entry is two thirds of a read, and every epoch reads every entry)
        self._verified: set[str] = set()
        # encoder -> {autocast dtype: fingerprint}; weak keys: an encoder that is gone can never lend its slot
        self._fingerprints: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()

    def fingerprint(self, sam: Sam) -> str:
        """``sam_fingerprint`` of ``sam`` (hashed once per encoder and autocast dtype; ``meta.json`` written)."""
        known = self._fingerprints.setdefault(sam.image_encoder, {})
        autocast = autocast_in_force(sam)
        if autocast not in known:
            fingerprint, context = sam_fingerprint(sam)
            self.describe(fingerprint, **context)
            known[autocast] = fingerprint
        return known[autocast]

    def key(self, *, fingerprint: str, image: torch.Tensor | None = None, digest: str | None = None) -> str:
        """An entry's key from the image (3, h, w) uint8 or its ``image_digest`` (what the item store keeps)."""
        if digest is None:
            digest = image_digest(image)
        return f"{fingerprint}-{self.dtype}/{digest}"

    def path(self, key: str) -> Path:
        """Where ``key`` lives on disk (two-character fan-out keeps folders small)."""
        folder, digest = key.split("/")
        return fan_out.entry_path(self.root / folder, digest, suffix=ENTRY_SUFFIX)

    def get(
        self,
        *,
        fingerprint: str,
        compute: Callable[[], torch.Tensor],
        image: torch.Tensor | None = None,
        digest: str | None = None,
    ) -> torch.Tensor:
        """The embedding of ``image`` (3, h, w) uint8, or of the image whose ``image_digest`` is ``digest``, under
        encoder ``fingerprint``; ``compute()`` -> (1, 256, 64, 64) runs only on a miss. Returns a float32 tensor
        on the CPU (``none``: ``compute()``'s own)."""
        if self.mode == "none":
            self.stats.misses += 1
            return compute().detach()
        key = self.key(fingerprint=fingerprint, image=image, digest=digest)
        stored = self._memory.get(key) if self.mode == "memory" else self._read(key)
        if stored is None:
            self.stats.misses += 1
            stored = compute().detach().to("cpu", DTYPES[self.dtype])
            if self.mode == "memory":
                stored = stored.clone()
                self._memory[key] = stored
            else:
                self._write(key, stored)
        else:
            self.stats.hits += 1
        with torch.inference_mode(False):  # a plain tensor even when filled inside Lightning's inference mode
            return stored.to(torch.float32, copy=True)

    def describe(self, fingerprint: str, **meta: object) -> None:
        """Write ``meta.json`` (what the fingerprint stands for) next to a fingerprint's entries, once."""
        if self.mode != "disk":
            return
        path = self.root / f"{fingerprint}-{self.dtype}" / "meta.json"
        if not path.exists():
            self._atomic_write(path, (json.dumps({**meta, "dtype": self.dtype}, indent=2, default=str) + "\n").encode())

    def _read(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        fix = "point paths.cache_dir=... to a readable folder (or use cache=memory)"
        data = atomic.read_if_present(path, what="embedding cache", fix=fix)
        if data is None:
            return None
        try:
            embedding = decode_entry(data, verify=key not in self._verified)
        except CorruptEntry as error:
            self.stats.corrupt += 1
            log.warning("embedding cache: %s is corrupt (%s); recomputing it", path, error)
            return None
        self._verified.add(key)
        return embedding

    def _write(self, key: str, embedding: torch.Tensor) -> None:
        data = encode_entry(embedding)
        self._atomic_write(self.path(key), data)
        self.stats.bytes_written += len(data)

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fix = "free space or point paths.cache_dir=... to a writable folder (or use cache=memory)"
        atomic.write_entry(path, data, what="embedding cache", fix=fix)


def cache_folders(root: Path) -> list[Path]:
    """The fingerprint folders under ``root`` that this cache wrote (``<16 hex digits>-<dtype>``); nothing else."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and FOLDER_NAME.fullmatch(p.name))


def scan_cache(root: Path, *, verify: bool) -> list[dict[str, object]]:
    """One row per fingerprint folder: entries, bytes, corrupt entries (with ``verify``), meta."""
    rows = []
    for folder in cache_folders(root):
        entries = fan_out.entries(folder, suffix=ENTRY_SUFFIX)
        corrupt = 0
        if verify:
            for entry in entries:
                try:
                    decode_entry(entry.read_bytes())
                except CorruptEntry:
                    corrupt += 1
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):  # missing or damaged: the entries still count
            meta = {}
        rows.append(
            {
                "fingerprint": folder.name,
                "entries": len(entries),
                "bytes": sum(e.stat().st_size for e in entries),
                "corrupt": corrupt if verify else None,
                "model_type": meta.get("model_type", "?") if isinstance(meta, dict) else "?",
            }
        )
    return rows


def clear_folder(folder: Path) -> list[Path]:
    """Delete what the cache wrote in a fingerprint folder (entries, their temp files, ``meta.json``) and the
    folders that become empty. Returns what was left because the cache did not write it."""
    return fan_out.remove_written(folder, suffix=ENTRY_SUFFIX, also=("meta.json",))

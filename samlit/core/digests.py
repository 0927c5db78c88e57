"""Content digests: of tensors (the store's keys) and of files, where a file's
SHA-256 is remembered by (size, mtime) so an unchanged file is hashed once, not at every run."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from samlit.core import atomic

log = logging.getLogger(__name__)
CHUNK = 1 << 20  # bytes per read when hashing a file (and when streaming a download)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (any dtype, bf16 included), without a copy when it is already contiguous."""
    flat = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return memoryview(flat.numpy())


def image_digest(image: torch.Tensor) -> str:
    """SHA-256 of an image tensor's shape, dtype and pixels: the same pixels give the same key anywhere."""
    digest = hashlib.sha256(f"{image.dtype}:{tuple(image.shape)};".encode())
    digest.update(tensor_bytes(image))
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's content, read in ``CHUNK``-byte pieces (weights files are GBs: never whole in memory).
    The one file hash of samlit: ``FileDigests`` and the weights download (``samlit.model.download``) use it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FileDigests:
    """SHA-256 of files' content, remembered in ``index`` (JSON: path -> size, mtime_ns, sha256).

    A file whose size and mtime match the index is not read again; any other file is hashed (so a touched but
    unchanged file keeps its digest, and an edited one gets a new digest whatever its mtime says). ``save()``
    writes the index atomically; a damaged index is ignored (every file is hashed again).
    """

    def __init__(self, index: Path) -> None:
        self.index = Path(index)
        self.changed = False
        try:
            known = json.loads(self.index.read_text())
            self.known: dict[str, list] = known if isinstance(known, dict) else {}
        except FileNotFoundError:
            self.known = {}
        except (OSError, ValueError) as error:
            log.warning("file digests: index %s is unreadable (%s); hashing every file again", self.index, error)
            self.known = {}

    def digest(self, path: Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        seen = self.known.get(str(path))
        if isinstance(seen, list) and len(seen) == 3 and seen[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(seen[2])
        sha = file_sha256(path)
        self.known[str(path)] = [stat.st_size, stat.st_mtime_ns, sha]
        self.changed = True
        return sha

    def save(self) -> None:
        if self.changed:
            atomic.write_text(self.index, json.dumps(self.known, sort_keys=True) + "\n")
            self.changed = False

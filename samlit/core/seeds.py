"""Seeds derived from names, the same on every machine and process (Python's ``hash`` is salted per process)."""

from __future__ import annotations

import hashlib


def stable_hash(*parts: object) -> int:
    """A 64-bit integer from ``parts`` (joined with ``:``): e.g. ``stable_hash(seed, epoch, index)``."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")

"""Content-addressed folders, as the store keeps them: an entry named by its hex digest
lives at ``<root>/<first two hex digits>/<digest><suffix>`` (the fan-out keeps folders small) and is written
atomically (``samlit.core.atomic``: a ``.<name>.<random>.tmp`` file renamed into place)."""

from __future__ import annotations

import re
from pathlib import Path

FAN_OUT = re.compile(r"[0-9a-f]{2}")


def entry_path(root: Path, digest: str, *, suffix: str) -> Path:
    """Where the entry ``digest`` lives under ``root``."""
    return root / digest[:2] / f"{digest}{suffix}"


def entries(root: Path, *, suffix: str) -> list[Path]:
    """Every entry under ``root`` (none when ``root`` is not a folder)."""
    return list(root.glob(f"*/*{suffix}")) if root.is_dir() else []


def remove_written(root: Path, *, suffix: str, also: tuple[str, ...] = ()) -> list[Path]:
    """Delete what was written under ``root``: its entries, their temp files and the files named in ``also``
    (with their temp files); then the fan-out folders that become empty, and ``root`` itself when nothing is
    left. Returns what was left because it was not written there (sorted)."""
    if not root.is_dir():
        return []
    written = [*entries(root, suffix=suffix), *root.glob(f"*/.*{suffix}.*.tmp")]
    for name in also:
        written += [root / name, *root.glob(f".{name}.*.tmp")]
    for path in written:
        path.unlink(missing_ok=True)
    for fan_out in root.iterdir():
        if fan_out.is_dir() and FAN_OUT.fullmatch(fan_out.name) and not any(fan_out.iterdir()):
            fan_out.rmdir()
    left = sorted(root.rglob("*"))
    if not left:
        root.rmdir()
    return left

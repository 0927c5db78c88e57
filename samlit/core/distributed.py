"""Rows gathered across DDP ranks (a no-op without DDP)."""

from __future__ import annotations

from typing import Any

import torch


def gather_by_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's ``rows`` (dicts with a ``key``; CPU tensors allowed), on every rank, sorted by key.

    Without DDP: ``rows`` sorted. A collective under DDP: every rank must call it.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part or []]
    return sorted(rows, key=lambda row: row["key"])

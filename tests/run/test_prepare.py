"""``python embed.py``: the cache build as a user runs it (subprocess, real Hydra): views, reuse, DDP sharding."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from samlit.model.embeddings import scan_cache
from tests.conftest import FAST, REPO

BUILD_LINE = re.compile(r"embedding cache \(disk at .*\): (\d+) images, (\d+) already cached, (\d+) encoded")


def run_embed(root: Path, *overrides: str) -> list[tuple[int, int, int]]:
    """Run embed.py; returns each rank's (images, already cached, encoded) from its summary line."""
    command = [sys.executable, str(REPO / "embed.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    result = subprocess.run([*command, *FAST, *overrides], capture_output=True, text=True, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return [tuple(map(int, m)) for m in BUILD_LINE.findall(result.stdout + result.stderr)]


def entries(root: Path) -> int:
    (row,) = scan_cache(root / "cache" / "embeddings", verify=True)
    assert row["corrupt"] == 0 and row["model_type"] == "tiny"
    return row["entries"]


@pytest.mark.slow
def test_build_encodes_every_view_once_and_the_next_build_nothing(tmp_path):
    ((scans, cached, encoded),) = run_embed(tmp_path)  # no augmentation: one image per scan
    assert cached == 0 and encoded == scans == entries(tmp_path)
    ((images, cached, encoded),) = run_embed(tmp_path, "data.augment.views=2")
    extra = images - scans  # two views per training scan; the scans themselves are cached already
    assert extra > 0 and extra % 2 == 0 and cached >= scans
    assert cached + encoded == images and entries(tmp_path) == scans + encoded
    ((again, cached, encoded),) = run_embed(tmp_path, "data.augment.views=2")
    assert (again, cached, encoded) == (images, images, 0)


@pytest.mark.slow
def test_ddp_ranks_share_the_build(tmp_path):
    """Two CPU processes (gloo): each encodes its share, together every image once."""
    ranks = run_embed(tmp_path, "+trainer.strategy=ddp", "trainer.devices=2")
    assert len(ranks) == 2
    total = entries(tmp_path)
    assert sum(encoded for _, _, encoded in ranks) == total
    assert all(0 < encoded < total for _, _, encoded in ranks)

"""The embedding cache under faults: a build killed half way (two writers at once: ``test_embeddings.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA = ["data.num_scans=8", "data.image_size=64", "trainer.accelerator=cpu"]


def embed(root: Path, cache: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "embed.py"), f"paths.root_dir={root}", f"paths.cache_dir={cache}"]
    return subprocess.Popen(
        [*command, *DATA, *overrides], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def cache_info(cache: Path) -> dict:
    command = [sys.executable, "-m", "samlit.cache", "info", "--verify", "--dir", str(cache / "embeddings")]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return {"text": result.stdout, "entries": sum(1 for _ in (cache / "embeddings").glob("*/*/*.emb"))}


def build_line(process: subprocess.Popen) -> tuple[int, int, int]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    images, cached, encoded = map(
        int, re.search(r"(\d+) images, (\d+) already cached, (\d+) encoded", out + err).groups()
    )
    return images, cached, encoded


@pytest.mark.slow
def test_a_killed_build_keeps_its_whole_entries_and_the_next_build_does_the_rest(tmp_path):
    cache = tmp_path / "cache"
    killed = embed(
        tmp_path,
        cache,
        "+callbacks.signal._target_=tests.signals.SignalAt",
        "+callbacks.signal.step=3",
        "+callbacks.signal.signal=SIGKILL",
        "+callbacks.signal.during=cache",
    )
    killed.communicate(timeout=600)
    assert killed.returncode == -9
    info = cache_info(cache)
    assert info["entries"] == 3 and ", 0 corrupt" in info["text"]  # every entry on disk reads back whole
    images, cached, encoded = build_line(embed(tmp_path, cache))
    assert (cached, encoded) == (3, images - 3)

"""The prepare stage under faults: killed half way (two writers at once: ``tests/data/test_store.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA = ["data.num_scans=8", "data.image_size=64", "data.crop=none", "trainer.accelerator=cpu"]


def run_prepare(root: Path, cache: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "prepare.py"), f"paths.root_dir={root}", f"paths.cache_dir={cache}"]
    return subprocess.Popen(
        [*command, *DATA, *overrides], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def store_info(cache: Path) -> dict:
    command = [sys.executable, "-m", "samlit.cache", "info", "--verify", "--dir", str(cache / "store")]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return {"text": result.stdout, "entries": sum(1 for _ in (cache / "store").glob("*/*.safetensors"))}


def prepared_line(process: subprocess.Popen) -> tuple[int, int, int]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    entries, found, made = map(int, re.search(r"(\d+) entries: (\d+) already prepared, (\d+) made", out + err).groups())
    return entries, found, made


@pytest.mark.slow
def test_a_killed_prepare_keeps_its_whole_entries_and_the_next_one_does_the_rest(tmp_path):
    cache = tmp_path / "cache"
    killed = run_prepare(
        tmp_path,
        cache,
        "+callbacks.signal._target_=tests.signals.SignalAt",
        "+callbacks.signal.step=3",
        "+callbacks.signal.signal=SIGKILL",
        "+callbacks.signal.during=cache",  # after 3 batches of the prepare stage's predict loop
    )
    killed.communicate(timeout=600)
    assert killed.returncode == -9
    info = store_info(cache)
    assert info["entries"] == 3 and info["text"].rstrip().splitlines()[0].endswith(", 0 damaged")  # all whole
    entries, found, made = prepared_line(run_prepare(tmp_path, cache))
    assert (found, made) == (3, entries - 3)

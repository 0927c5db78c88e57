"""What a file or a config can make samlit do: load tensors only, never run a shell, never reach other hosts."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from samlit.model.weights import OFFICIAL
from tests.conftest import REPO

SOURCES = sorted([*REPO.glob("samlit/**/*.py"), *REPO.glob("*.py"), *REPO.glob("bench/*.py")])


def calls(name: str):
    """(file, call node) for every call of ``<anything>.name(...)`` or ``name(...)`` in samlit's code."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path, node


def keyword(node: ast.Call, name: str):
    found = [k.value for k in node.keywords if k.arg == name]
    return found[0] if found else None


def test_every_torch_load_is_weights_only():
    loads = list(calls("load"))
    torch_loads = [(p, n) for p, n in loads if ast.unparse(n.func).startswith("torch.")]
    assert torch_loads, "no torch.load found: the search is broken"
    for path, node in torch_loads:
        value = keyword(node, "weights_only")
        assert isinstance(value, ast.Constant) and value.value is True, f"{path}:{node.lineno}"


def test_every_lightning_checkpoint_load_is_weights_only():
    """``trainer.fit/test/validate/predict(ckpt_path=...)`` load through torch.load too."""
    for name in ("fit", "test", "validate", "predict"):
        for path, node in calls(name):
            if keyword(node, "ckpt_path") is not None:
                value = keyword(node, "weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, f"{path}:{node.lineno}"


def test_no_shell_and_no_pickle():
    for path in SOURCES:
        text = path.read_text()
        assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text, path
        assert not re.search(r"^\s*import pickle|pickle\.loads?\(", text, re.M), path


def test_downloads_only_from_the_pinned_urls_with_their_hashes():
    for spec in OFFICIAL.values():
        assert spec.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_")
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    for path, node in calls("download"):
        assert keyword(node, "sha256") is not None, f"{path}:{node.lineno}: a download without its SHA-256"


@pytest.mark.slow
@pytest.mark.parametrize("override,group,valid", [("model=vit_x", "model", "vit_b"), ("loss=foo", "loss", "dice")])
def test_unknown_config_option_lists_the_valid_ones(tmp_path, override, group, valid):
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), override], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"Available options in '{group}'" in result.stderr and valid in result.stderr
    assert not (tmp_path / "outputs").exists()  # nothing ran

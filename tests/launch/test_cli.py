"""The ``samlit`` console script (``samlit.cli``): one command for cache, data, export and sweep, the same code
as ``python -m samlit.<command>``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samlit.cli import COMMANDS, main


def samlit_script() -> str:
    """The installed console script (``pip install -e .`` writes it beside this Python)."""
    found = shutil.which("samlit", path=str(Path(sys.executable).parent)) or shutil.which("samlit")
    if found is None:
        pytest.fail("no `samlit` script: pip install -e . -c constraints.txt (pyproject.toml [project.scripts])")
    return found


def samlit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([samlit_script(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_command(tmp_path):
    result = samlit("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["cache", "data", "export", "sweep"] == list(COMMANDS)


@pytest.mark.parametrize("args,said", [(["bogus", "info"], "unknown command 'bogus'"), ([], "no command given")])
def test_an_unknown_or_missing_command_is_one_line_and_exit_2(tmp_path, args, said):
    result = samlit(*args, cwd=tmp_path)
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and result.stdout == ""
    assert line == f"error: {said}: pass one of cache, data, export, sweep (samlit --help)"


def test_cache_info_is_python_m_samlit_cache(tmp_path):
    cache = tmp_path / "cache" / "embeddings"
    cache.mkdir(parents=True)
    result = samlit("cache", "info", "--dir", str(cache), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{cache}: 0 entries, 0.0 MiB")
    module = subprocess.run(
        [sys.executable, "-m", "samlit.cache", "info", "--dir", str(cache)], capture_output=True, text=True
    )
    assert (module.returncode, module.stdout) == (0, result.stdout)
    missing = samlit("cache", "info", "--dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    (line,) = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and line.startswith(f"error: --dir {tmp_path / 'nowhere'} does not exist")


def test_the_commands_pass_their_exit_status_on(tmp_path):
    """``samlit sweep`` / ``samlit export`` on a dir that holds no sweep / no run: their own one-line errors."""
    sweep = samlit("sweep", str(tmp_path), cwd=tmp_path)
    assert sweep.returncode == 2 and sweep.stderr.startswith("error: no job dirs (with .hydra/overrides.yaml) under")
    export = samlit("export", str(tmp_path), cwd=tmp_path)
    assert export.returncode == 2 and export.stderr.strip() == (
        f"error: {tmp_path} holds no checkpoint (checkpoints/*.ckpt); pass a run dir of train.py or a .ckpt"
    )


@pytest.mark.parametrize("name", ["cache", "data", "export"])
def test_each_command_has_its_help(name, capsys):
    """Each command's module imports and parses its arguments (``--help``: its usage, exit 0)."""
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    usage = capsys.readouterr().out.splitlines()[0]  # prog: "python -m samlit.<name>" or "samlit <name>"
    assert exit_.value.code == 0 and usage.startswith("usage: ") and name in usage


def test_sweep_without_its_dir_says_its_usage(capsys):
    assert main(["sweep"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("usage: ") and "sweep <multirun dir>" in line


def test_help_imports_no_command(tmp_path):
    """``samlit --help`` is instant: no torch, Hydra or command module is imported for it."""
    code = "import sys; from samlit.cli import main; main(['--help']); print(sorted(m for m in sys.modules if m in "
    code += "('torch', 'hydra', 'lightning') or m.startswith('samlit.')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert result.stdout.splitlines()[-1] == "['samlit.cli']"


def test_data_export_as_the_readme_writes_it(tmp_path):
    """Issue 26: ``python -m samlit.data export --out DIR <overrides>`` (the README's order) failed with
    ``unrecognized arguments``; it writes the export now, and the other order still does."""
    from samlit.data.synthetic import generate_synthetic_staver

    root = generate_synthetic_staver(root=tmp_path / "staver", num_scans=4, image_size=64, seed=1)
    overrides = ["data=staver", f"data.root={root}", f"paths.root_dir={tmp_path}"]
    for out, argv in (
        ("a", ["--out", str(tmp_path / "a"), *overrides]),
        ("b", [*overrides, "--out", str(tmp_path / "b")]),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "samlit.data", "export", *argv], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith(f"-> {tmp_path / out}: instances.json, images/, masks/")
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["images", "instances.json", "masks"]

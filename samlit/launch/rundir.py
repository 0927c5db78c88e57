"""A Hydra callback that checks, before Hydra makes it, that the run dir (or a sweep's dir) can be written.

Hydra would fail with a traceback; this prints one line naming the path and the fix, and exits 2.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FIX = "pass paths.root_dir=<a writable folder> (runs go to <root>/outputs) or hydra.{key}.dir=<dir>"


def writable_problem(path: Path) -> str | None:
    """Why ``path`` cannot be made and written into, or ``None``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        return f"{blocker} is a file" if blocker else error.strerror or str(error)
    return None


def require_writable(path: Path | str, *, what: str, key: str) -> None:
    problem = writable_problem(Path(path))
    if problem:
        sys.stderr.write(f"error: cannot write the {what} {path}: {problem}; {FIX.format(key=key)}\n")
        sys.exit(2)


class RunDirCheck(Callback):
    """Both hooks run before Hydra sets its config; the dirs hold ``${hydra:...}`` (``paths.root_dir`` defaults
    to ``${hydra:runtime.cwd}``), so the config is set first, as Hydra itself does next."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        require_writable(config.hydra.run.dir, what="run dir", key="run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        require_writable(config.hydra.sweep.dir, what="sweep dir", key="sweep")

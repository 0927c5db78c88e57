"""A Hydra callback that checks, before Hydra makes it, that the run dir (or a sweep's dir) can be written.

Hydra would fail with a traceback; this prints one line naming the path and the fix, and exits 2. It stays in
``launch`` because it is Hydra glue (``hydra.callbacks`` in conf/train.yaml); what a run dir holds, and the check
itself, are ``samlit.run.rundir``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from samlit.run.rundir import writable_problem

FIX = "pass paths.root_dir=<a writable folder> (runs go to <root>/outputs) or hydra.{key}.dir=<dir>"


def require_writable(path: Path | str, *, what: str, key: str) -> None:
    """``error: cannot write the <what> <path>: <why>; <fix>`` and exit 2, unless ``path`` can be written."""
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

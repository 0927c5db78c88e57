"""The ``samlit`` command: ``samlit cache|data|export|sweep ...``, one console script for the commands that are
not Hydra jobs (those are scripts: ``python train.py``, ``eval.py``, ``predict.py``, ...).

    samlit cache info|clear [--dir DIR] ...      the store of prepared items and features (samlit.launch.cache_cli)
    samlit data info|export <train.py overrides>  a data set as train.py would read it (samlit.launch.data_cli)
    samlit export <run dir | .ckpt> [--onnx] ...  a run's exports, rebuilt from its checkpoint (samlit.run.export)
    samlit sweep <multirun dir>                   a sweep's summary table (samlit.launch.sweep)

``python -m samlit.<command>`` runs the same code. An entry shim: it stands outside the layers (it may import
any of them) and imports a command's module only when that command runs, so ``samlit --help`` is instant.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import NoReturn

# command -> (module, what it does); each module has ``cli(argv: list[str] | None) -> int`` (exit status)
COMMANDS = {
    "cache": ("samlit.launch.cache_cli", "inspect or clear the store (prepared items, image features)"),
    "data": ("samlit.launch.data_cli", "look at a data set before training on it (info | export)"),
    "export": ("samlit.run.export", "rebuild a run's exports (.pth, --onnx) from its checkpoint"),
    "sweep": ("samlit.launch.sweep", "write and print the summary of a multirun dir"),
}


def usage() -> str:
    """``samlit --help``: the commands, one a line."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: samlit <command> [args ...]   (samlit <command> --help: that command's arguments)",
            "",
            "commands:",
            *lines,
            "",
            "Training, evaluation and prediction are Hydra jobs: python train.py, eval.py, predict.py, ... (README)",
        ]
    )


def command(name: str) -> Callable[[list[str] | None], int]:
    """The ``cli`` function of command ``name`` (its module imported now)."""
    module, _ = COMMANDS[name]
    return importlib.import_module(module).cli


def main(argv: list[str] | None = None) -> int:
    """Run ``samlit <command> [args ...]``; returns the exit status (2: no or an unknown command)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {given}: pass one of {', '.join(COMMANDS)} (samlit --help)", file=sys.stderr)
        return 2
    return command(argv[0])(argv[1:])


def run_as_module(name: str) -> NoReturn:
    """``python -m samlit.<name> ...``: ``samlit <name> ...`` with this process's arguments."""
    sys.exit(main([name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())

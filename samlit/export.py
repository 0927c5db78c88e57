"""``python -m samlit.export <run dir | .ckpt>``: ``samlit export`` (``samlit.cli``, then ``samlit.run.export``).

An entry shim: it stands outside the layers."""

from samlit.cli import run_as_module

if __name__ == "__main__":
    run_as_module("export")

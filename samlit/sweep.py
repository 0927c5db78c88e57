"""``python -m samlit.sweep <multirun dir>``: ``samlit sweep`` (``samlit.cli``, then ``samlit.launch.sweep``).

An entry shim: it stands outside the layers."""

from samlit.cli import run_as_module

if __name__ == "__main__":
    run_as_module("sweep")

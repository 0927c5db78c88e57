"""``python -m samlit.cache info|clear``: ``samlit cache`` (``samlit.cli``, then ``samlit.launch.cache_cli``).

An entry shim: it stands outside the layers."""

from samlit.cli import run_as_module

if __name__ == "__main__":
    run_as_module("cache")

"""``python -m samlit.data info|export``: ``samlit data`` (``samlit.cli``, then ``samlit.launch.data_cli``).

An entry shim: it stands outside the layers, so it may reach ``launch`` although it sits in ``samlit/data``
(the ``data`` layer itself never imports a layer above it)."""

from samlit.cli import run_as_module

if __name__ == "__main__":
    run_as_module("data")

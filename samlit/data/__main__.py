"""``python -m samlit.data info|export``: an entry point (see ``samlit.launch.data_cli``), outside the layers."""

import sys

from samlit.launch.data_cli import cli

if __name__ == "__main__":
    sys.exit(cli())

"""``python -m samlit.sweep <multirun dir>``: see ``samlit.launch.sweep``."""

import sys

from samlit.launch.sweep import cli

if __name__ == "__main__":
    sys.exit(cli())

"""``python -m samlit.export <run dir | .ckpt>``: see ``samlit.run.export``."""

import sys

from samlit.run.export import cli

if __name__ == "__main__":
    sys.exit(cli())

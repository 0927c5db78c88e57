"""``python -m samlit.cache info|clear``: see ``samlit.launch.cache_cli`` (the cache: ``samlit.model.embeddings``)."""

import sys

from samlit.launch.cache_cli import cli

if __name__ == "__main__":
    sys.exit(cli())

"""``python embed.py``: the old name of ``python prepare.py``, kept as an alias (same config, same overrides)."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("prepare.py")), run_name="__main__")

"""``python embed.py``: the old name of ``python prepare.py``, kept as an alias (same config, same overrides)."""

from prepare import main

if __name__ == "__main__":
    main()

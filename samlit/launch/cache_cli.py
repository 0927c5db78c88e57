"""``samlit cache info|clear`` (``python -m samlit.cache``): inspect or clear the store (``samlit.data.store``).

samlit cache info  [--dir DIR] [--verify]      entries, MiB, entries per features tag (model, encoder fingerprint,
                                               dtype; "items only" = prepared without features), damaged ones
samlit cache clear [--dir DIR] [--features T]  without T: every entry the store wrote; with T: that tag's only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samlit.data.store import DEFAULT_DIR, clear_store, store_info


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="samlit cache", description="Inspect or clear the store.")
    parser.add_argument("command", choices=["info", "clear"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"store folder (default {DEFAULT_DIR})")
    parser.add_argument("--verify", action="store_true", help="info: re-read every entry and count damaged ones")
    parser.add_argument("--features", help="clear: only the entries of this features tag (as `info` lists it)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        problem = "does not exist" if not args.dir.exists() else "is not a folder"
        print(f"error: --dir {args.dir} {problem}; the store is <paths.cache_dir>/store", file=sys.stderr)
        return 2
    info = store_info(args.dir, verify=args.verify)
    if args.command == "info":
        damaged = "" if info["damaged"] is None else f", {info['damaged']} damaged"
        print(f"{args.dir}: {info['entries']} entries, {info['bytes'] / 2**20:.1f} MiB{damaged}")
        for tag, count in info["by_features"].items():
            print(f"  {tag or 'items only (no features)'}: {count} entries")
        return 0
    if args.features is not None and args.features not in info["by_features"]:
        print(f"error: no entries with features {args.features} under {args.dir} (see `info`)", file=sys.stderr)
        return 2
    removed, kept = clear_store(args.dir, features=args.features)
    for path in kept:  # only what the store wrote: anything else in there stays, and is named
        print(f"kept {path}: not written by the store")
    print(f"removed {removed} entries from {args.dir}")
    return 0

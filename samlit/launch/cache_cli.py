"""``python -m samlit.cache info|clear``: inspect or clear the embedding cache (``samlit.model.embeddings``) and
the item store beside it (``<DIR>/../items``, ``samlit.data.item_store``).

python -m samlit.cache info  [--dir DIR] [--verify]   entries, bytes, corrupt entries per fingerprint; the store
python -m samlit.cache clear [--dir DIR] [--fingerprint F]   without F: every fingerprint and the item store
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samlit.data.item_store import clear_store, store_size
from samlit.model.embeddings import DEFAULT_DIR, clear_folder, scan_cache


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlit.cache", description="Inspect or clear the cache.")
    parser.add_argument("command", choices=["info", "clear"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cache folder (default {DEFAULT_DIR})")
    parser.add_argument("--verify", action="store_true", help="info: re-read every entry and count corrupt ones")
    parser.add_argument("--fingerprint", help="clear: only this fingerprint folder (as `info` lists it)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        problem = "does not exist" if not args.dir.exists() else "is not a folder"
        print(
            f"error: --dir {args.dir} {problem}; the embedding cache is <paths.cache_dir>/embeddings", file=sys.stderr
        )
        return 2
    rows = scan_cache(args.dir, verify=args.verify)
    items = args.dir.parent / "items"
    if args.command == "info":
        print(f"{args.dir}: {sum(r['entries'] for r in rows)} entries, {sum(r['bytes'] for r in rows) / 2**20:.1f} MiB")
        entries, size = store_size(items)
        if entries:
            print(f"  item store {items}: {entries} prepared items, {size / 2**20:.1f} MiB")
        for row in rows:
            corrupt = "" if row["corrupt"] is None else f", {row['corrupt']} corrupt"
            print(
                f"  {row['fingerprint']}  {row['model_type']:>6}  {row['entries']} entries, "
                f"{row['bytes'] / 2**20:.1f} MiB{corrupt}"
            )
        return 0
    targets = [args.dir / r["fingerprint"] for r in rows if args.fingerprint in (None, r["fingerprint"])]
    if args.fingerprint and not targets:
        print(f"error: no fingerprint folder {args.fingerprint} under {args.dir} (see `info`)", file=sys.stderr)
        return 2
    for target in targets:  # only what the cache wrote: anything else in there stays, and is named
        for path in clear_folder(target):
            print(f"kept {path}: not written by the embedding cache")
    print(f"removed {len(targets)} fingerprint folder(s) from {args.dir} (other files and folders there untouched)")
    if args.fingerprint is None and items.is_dir():
        for path in clear_store(items):
            print(f"kept {path}: not written by the item store")
        print(f"removed the item store {items}")
    return 0

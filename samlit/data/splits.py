"""Train / val / test splits that depend only on the scans' keys and ``seed``: the same images give the same
split whatever their source or order on disk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from samlit.core.errors import SamlitError


def split_keys(keys: Sequence[str], *, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """Deterministic train/val/test split: sort, permute with ``seed``, cut test then val; each sorted.

    ``round(fraction * n)`` keys go to val and to test, at least one each when the fraction is > 0 and
    there are 3 keys or more; train must keep at least one.
    """
    fractions = f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}"
    in_range = all(0 <= fraction < 1 for fraction in (val_fraction, test_fraction))
    if not in_range or val_fraction + test_fraction >= 1:
        raise SamlitError(f"bad split {fractions}: each must be in [0, 1) and their sum below 1")
    ordered = sorted(keys)
    if not ordered:
        raise SamlitError("no scans to split (every scan lacks a stamp, or the data set is empty)")
    if len(set(ordered)) != len(ordered):
        raise SamlitError("cannot split scans: duplicate keys")
    n = len(ordered)
    n_test = _split_size(n, test_fraction)
    n_val = _split_size(n, val_fraction)
    if n - n_test - n_val < 1:
        raise SamlitError(
            f"split of {n} scans with {fractions} leaves no training scan; lower the fractions or add scans"
        )
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    return {
        "train": sorted(shuffled[n_test + n_val :]),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "test": sorted(shuffled[:n_test]),
    }


def _split_size(n: int, fraction: float) -> int:
    size = round(fraction * n)
    return max(size, 1) if n >= 3 and fraction > 0 else size

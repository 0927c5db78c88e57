"""Splits: deterministic, disjoint, complete, a function of the keys and the seed only."""

from __future__ import annotations

import pytest

from samlit.core.errors import SamlitError
from samlit.data.splits import split_keys

KEYS = [f"stampDS-{i:05d}" for i in range(1, 21)]


def test_split_is_deterministic_disjoint_and_complete():
    split = split_keys(KEYS, seed=0, val_fraction=0.15, test_fraction=0.2)

    assert split == split_keys(list(reversed(KEYS)), seed=0, val_fraction=0.15, test_fraction=0.2)
    assert [len(split[name]) for name in ("train", "val", "test")] == [13, 3, 4]
    assert sorted(split["train"] + split["val"] + split["test"]) == KEYS
    assert all(split[name] == sorted(split[name]) for name in split)
    assert split != split_keys(KEYS, seed=1, val_fraction=0.15, test_fraction=0.2)  # seed 0 is a seed


def test_split_gives_small_sets_at_least_one_key():
    split = split_keys(KEYS[:3], seed=0, val_fraction=0.1, test_fraction=0.1)
    assert [len(split[name]) for name in ("train", "val", "test")] == [1, 1, 1]

    no_test = split_keys(KEYS[:5], seed=0, val_fraction=0.2, test_fraction=0.0)
    assert (len(no_test["val"]), no_test["test"]) == (1, [])


@pytest.mark.parametrize("val, test", [(-0.1, 0.2), (1.0, 0.0), (0.2, 1.5), (0.5, 0.5), (float("nan"), 0.1)])
def test_bad_fractions_name_the_config_keys(val, test):
    with pytest.raises(SamlitError, match=r"data\.val_fraction") as error:
        split_keys(KEYS, seed=0, val_fraction=val, test_fraction=test)
    assert "data.test_fraction" in str(error.value)


def test_split_without_training_scan_is_an_error():
    with pytest.raises(SamlitError, match=r"data\.val_fraction.*data\.test_fraction.*no training scan"):
        split_keys(KEYS[:2], seed=0, val_fraction=0.5, test_fraction=0.4)
    with pytest.raises(SamlitError, match="no scans to split"):
        split_keys([], seed=0, val_fraction=0.1, test_fraction=0.1)

"""Bad data never stops a run by surprise: bad scans are skipped (or raise), stamps without ink are counted."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from samlit.core.errors import SamlitError
from samlit.data.datamodule import InstanceDataModule
from samlit.data.staver import StaverSource, check_scans, find_scans
from samlit.data.synthetic import generate_synthetic_staver

NUM_SCANS, SIZE = 12, 96


@pytest.fixture(scope="module")
def staver(tmp_path_factory) -> Path:
    return generate_synthetic_staver(root=tmp_path_factory.mktemp("s"), num_scans=NUM_SCANS, image_size=SIZE, seed=3)


@pytest.fixture
def broken(staver, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy with one scan broken each way; returns the root and {key: the file to be named}."""
    root = Path(shutil.copytree(staver, tmp_path / "staver"))
    scans = find_scans(root)
    scans[0].scan.write_bytes(b"")  # zero bytes
    scans[1].scan.write_text("<html>not an image</html>")  # not an image
    data = scans[2].scan.read_bytes()
    scans[2].scan.write_bytes(data[: len(data) // 2])  # truncated PNG
    cv2.imwrite(str(scans[3].pixel_gt), np.full((SIZE + 5, 40), 255, np.uint8))  # another size
    scans[4].region_map.unlink()  # missing ground truth
    named = [scans[0].scan, scans[1].scan, scans[2].scan, scans[3].pixel_gt, scans[4].region_map]
    return root, {s.key: str(p) for s, p in zip(scans, named, strict=False)}


def test_bad_scans_are_skipped_named_and_counted(broken, caplog):
    root, named = broken
    with caplog.at_level(logging.WARNING):
        good, bad = check_scans(find_scans(root), on_bad_file="skip")
    assert len(good) == NUM_SCANS - 5 and [b.key for b in bad] == sorted(named)
    for b in bad:
        assert named[b.key] in b.problem  # the file itself, by path
        assert named[b.key] in caplog.text and f"scan {b.key}: " in caplog.text
    mismatch = next(b for b in bad if "size mismatch" in b.problem)
    assert f"{SIZE}" in mismatch.problem and "40x" in mismatch.problem  # both sizes, both files


def test_bad_scans_raise_one_line_with_the_fix(broken):
    root, named = broken
    with pytest.raises(SamlitError) as error:
        check_scans(find_scans(root), on_bad_file="raise")
    message = str(error.value)
    assert named[min(named)] in message and "data.on_bad_file=skip" in message and "\n" not in message
    with pytest.raises(SamlitError, match=r"data\.on_bad_file='ignore' must be one of skip, raise"):
        check_scans(find_scans(root), on_bad_file="ignore")


def test_datamodule_leaves_bad_scans_out_and_reports_them(broken):
    root, named = broken
    datamodule = InstanceDataModule(source=StaverSource(root=root), on_bad_file="skip")
    datamodule.setup("fit")
    in_splits = {f.key for files in datamodule.splits.values() for f in files}
    assert not in_splits & set(named)
    summary = datamodule.summary()
    assert summary["bad_images"] == 5 and all(any(p in line for line in summary["bad_files"]) for p in named.values())


def test_stamps_without_ink_and_specks_are_counted_and_never_trained_on(staver, tmp_path):
    """A region with no ink, and a 1-pixel region: counted, left out; a scan whose only stamp has no ink is out."""
    root = Path(shutil.copytree(staver, tmp_path / "staver"))
    scans = find_scans(root)
    # scan 0: wipe the ink of every stamp -> its regions stay, but have nothing to learn
    cv2.imwrite(str(scans[0].pixel_gt), np.full((SIZE, round(SIZE / 1.414)), 255, np.uint8))
    # scan 1: add a 1-pixel speck to its region map
    region_map = cv2.imread(str(scans[1].region_map), cv2.IMREAD_GRAYSCALE)
    background = int(np.bincount(region_map.ravel()).argmax())
    region_map[0, 0] = 255 - background
    cv2.imwrite(str(scans[1].region_map), region_map)

    datamodule = InstanceDataModule(source=StaverSource(root=root, min_area=16))
    datamodule.setup("fit")
    summary = datamodule.summary()
    assert summary["instances_without_ink"] >= 1 and summary["instances_below_min_area"] >= 1
    assert scans[0].key not in {f.key for files in datamodule.splits.values() for f in files}
    for split in ("train", "val", "test"):
        for item in datamodule.dataset(split, train=split == "train"):  # no store: made from the files
            masks = np.asarray(item["masks"])
            assert len(item["boxes"]) == len(masks) > 0 and masks.reshape(len(masks), -1).any(1).all()

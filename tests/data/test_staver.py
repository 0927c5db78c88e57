"""The StaVer reader, run on generated scans (written in the real layout) and on hand-made maps."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from samlit.core.errors import SamlitError
from samlit.data.staver import ScanFiles, check_scans, count_stamps, find_scans, read_regions, read_scan
from samlit.data.synthetic import generate_synthetic_staver, render_scan

SEED, SIZE, NUM_SCANS = 4, 128, 16


@pytest.fixture(scope="module")
def staver(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("staver")
    return generate_synthetic_staver(root=root, num_scans=NUM_SCANS, image_size=SIZE, seed=SEED)


@pytest.fixture
def staver_copy(staver, tmp_path) -> Path:
    """A private copy of the data set that a test may break."""
    return Path(shutil.copytree(staver, tmp_path / "staver"))


def sort_boxes(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def write_gray(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_find_scans_lists_every_scan_sorted(staver):
    scans = find_scans(staver)

    assert [s.key for s in scans] == [f"stampDS-{i:05d}" for i in range(1, NUM_SCANS + 1)]
    first = scans[0]
    assert first == ScanFiles(
        key="stampDS-00001",
        scan=staver / "scans/scans/stampDS-00001.png",
        pixel_gt=staver / "ground-truth-pixel/ground-truth-pixel/stampDS-00001-px.png",
        region_map=staver / "ground-truth-maps/ground-truth-maps/stampDS-00001-gt.png",
    )


def test_read_scan_recovers_the_generated_stamps(staver):
    stamp_counts = []
    for i, files in enumerate(find_scans(staver)):
        truth = render_scan(rng=np.random.default_rng([SEED, i]), image_size=SIZE)
        sample = read_scan(files)

        assert sample.key == files.key
        np.testing.assert_array_equal(sample.image, truth.image)
        assert sample.boxes.dtype == np.float32 and sample.masks.dtype == bool
        assert sample.masks.shape == (len(truth.boxes), *truth.ink.shape)
        np.testing.assert_array_equal(sort_boxes(sample.boxes), sort_boxes(truth.boxes))
        np.testing.assert_array_equal(sample.masks.any(axis=0), truth.ink)
        for mask, box in zip(sample.masks, sample.boxes.astype(int), strict=True):
            x0, y0, x1, y1 = box
            assert mask.any() and not mask[:y0].any() and not mask[y1:].any()
            assert not mask[:, :x0].any() and not mask[:, x1:].any()
        assert not (sample.masks.sum(axis=0) > 1).any()  # instances are disjoint
        assert count_stamps(files) == len(truth.boxes)
        stamp_counts.append(len(truth.boxes))

    assert 0 in stamp_counts and max(stamp_counts) >= 2


def test_masks_are_ink_inside_each_region(staver):
    files = next(f for f in find_scans(staver) if count_stamps(f) >= 2)
    sample = read_scan(files)
    labels, boxes = read_regions(files.region_map)
    ink = cv2.imread(str(files.pixel_gt), cv2.IMREAD_GRAYSCALE) == 0

    np.testing.assert_array_equal(boxes, sample.boxes)
    for i, mask in enumerate(sample.masks):
        np.testing.assert_array_equal(mask, ink & (labels == i + 1))


def test_scan_without_stamp(staver):
    files = next(f for f in find_scans(staver) if count_stamps(f) == 0)
    sample = read_scan(files)

    assert sample.masks.shape == (0, SIZE, round(SIZE / 1.414))
    assert sample.boxes.shape == (0, 4)


def test_polarity_is_detected(staver_copy):
    files = next(f for f in find_scans(staver_copy) if count_stamps(f) >= 1)
    before = read_scan(files)
    for path in (files.region_map, files.pixel_gt):  # background 0, regions / ink 255
        write_gray(path, 255 - cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    after = read_scan(files)

    np.testing.assert_array_equal(after.boxes, before.boxes)
    np.testing.assert_array_equal(after.masks, before.masks)


def test_read_regions_orders_filters_and_uses_8_connectivity(tmp_path):
    region_map = np.full((60, 80), 255, np.uint8)
    region_map[30:40, 5:15] = 0  # lower-left square
    region_map[5:20, 50:60] = 0  # top-right square ...
    region_map[20:25, 60:65] = 0  # ... touching it diagonally: the same stamp
    region_map[50:53, 70:73] = 0  # 9 px: noise
    labels, boxes = read_regions(write_gray(tmp_path / "map.png", region_map))

    np.testing.assert_array_equal(boxes, np.array([[50, 5, 65, 25], [5, 30, 15, 40]], np.float32))
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1, 2}
    assert (labels[5:20, 50:60] == 1).all() and (labels[30:40, 5:15] == 2).all()
    assert (labels[50:53, 70:73] == 0).all()
    assert len(read_regions(tmp_path / "map.png", min_area=9)[1]) == 3


@pytest.mark.parametrize("value", [0, 255])
def test_uniform_map_has_no_stamp(tmp_path, value):
    labels, boxes = read_regions(write_gray(tmp_path / "map.png", np.full((20, 30), value, np.uint8)))

    assert boxes.shape == (0, 4) and not labels.any()


@pytest.mark.parametrize("which", ["pixel_gt", "region_map"])
def test_size_mismatch_names_both_files(staver_copy, which):
    files = find_scans(staver_copy)[0]
    path = getattr(files, which)
    write_gray(path, np.full((SIZE + 3, 50), 255, np.uint8))

    with pytest.raises(SamlitError) as error:
        read_scan(files)
    message = str(error.value)
    assert str(files.scan) in message and str(path) in message
    assert f"{round(SIZE / 1.414)}x{SIZE}" in message and f"50x{SIZE + 3}" in message


def test_unreadable_file_is_named(staver_copy):
    files = find_scans(staver_copy)[0]
    files.scan.write_bytes(b"not a png")

    with pytest.raises(SamlitError, match="not a readable image") as error:
        read_scan(files)
    assert str(files.scan) in str(error.value)


@pytest.mark.parametrize("make", ["missing", "file", "empty", "empty_scans_dir"])
def test_bad_root_is_one_line_naming_it(tmp_path, make):
    root = tmp_path / "root"
    if make == "file":
        root.write_text("")
    elif make == "empty":
        root.mkdir()
    elif make == "empty_scans_dir":
        (root / "scans" / "scans").mkdir(parents=True)

    with pytest.raises(SamlitError) as error:
        find_scans(root)
    message = str(error.value)
    assert str(root) in message and "\n" not in message
    assert "scans/scans/<key>.png" in message


@pytest.mark.parametrize("which", ["pixel_gt", "region_map"])
def test_missing_ground_truth_is_named(staver_copy, which):
    path = getattr(find_scans(staver_copy)[2], which)
    path.unlink()

    with pytest.raises(SamlitError) as error:
        check_scans(find_scans(staver_copy), on_bad_file="raise")
    assert str(path) in str(error.value) and "missing" in str(error.value)

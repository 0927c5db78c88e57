"""Messy ground truth read right (issue 16): noisy or inverted maps, JPEG / anti-aliased ground truth, a stamp
over half the page, outline-only or transparent region maps, transparent scans, EXIF-rotated files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlit.core.images import read_gray, read_rgb
from samlit.data.datamodule import InstanceDataModule
from samlit.data.ground_truth import fill_holes, foreground
from samlit.data.staver import StaverSource, check_scans, count_stamps, find_scans, read_scan, stamp_census
from samlit.data.synthetic import generate_synthetic_staver

SIZE = 160


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return generate_synthetic_staver(root=tmp_path_factory.mktemp("gt"), num_scans=6, image_size=SIZE, seed=3)


@pytest.fixture
def messy(clean, tmp_path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "staver"))


def inked(root: Path):
    return next(f for f in find_scans(root) if count_stamps(f) >= 2)


def write_jpeg(path: Path, gray: np.ndarray, quality: int = 75) -> None:
    """JPEG bytes under the ``.png`` name (OpenCV and Pillow decode by content, as a user's renamed file)."""
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(data.tobytes())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_inverted_noisy_region_map_gives_the_same_stamps(messy):
    files = inked(messy)
    before = read_scan(files)
    inverted = 255 - read_gray(files.region_map).astype(np.int16)  # stamps white on black
    for amplitude in (2, 12):  # +-2: a few neighbouring grey levels; +-12: many
        noise = np.random.default_rng(0).integers(-amplitude, amplitude + 1, inverted.shape)
        cv2.imwrite(str(files.region_map), np.clip(inverted + noise, 0, 255).astype(np.uint8))
        after = read_scan(files)

        np.testing.assert_array_equal(after.boxes, before.boxes)  # not one whole-page "stamp"
        np.testing.assert_array_equal(after.masks, before.masks)


def test_jpeg_ground_truth_is_thresholded_and_said(messy, caplog):
    files = inked(messy)
    before = read_scan(files)
    write_jpeg(files.pixel_gt, read_gray(files.pixel_gt))
    write_jpeg(files.region_map, read_gray(files.region_map))
    exact_rule = read_gray(files.pixel_gt) != 255  # the old rule: anything not exactly the background is ink
    after = read_scan(files)

    assert len(after.boxes) == len(before.boxes)  # no two neighbouring stamps merged
    np.testing.assert_allclose(after.boxes, before.boxes, atol=2)
    truth, got = before.masks.any(0), after.masks.any(0)
    assert exact_rule.sum() > 1.5 * truth.sum()  # what the exact rule did: far more "ink" than there is
    assert iou(got, truth) > 0.8 and got.sum() < 1.2 * truth.sum()
    census = stamp_census(files)
    assert census.grey_share[str(files.pixel_gt)] > 0

    with caplog.at_level(logging.WARNING):
        datamodule = InstanceDataModule(source=StaverSource(root=messy), val_fraction=0.2, test_fraction=0.2)
        datamodule.setup()
    (warning,) = [r.getMessage() for r in caplog.records if "not binary" in r.getMessage()]
    assert "2 of 12 files" in warning and "grey pixels" in warning and "thresholded" in warning
    assert datamodule.summary()["ground_truth_thresholded"] == 2


def test_anti_aliased_ink_is_thresholded_at_otsu():
    ink = np.full((40, 40), 255, np.uint8)
    ink[10:30, 18:22] = 0
    soft = cv2.GaussianBlur(ink, (5, 5), 1.0)  # anti-aliased edges
    result = foreground(soft)

    assert result.threshold is not None and 0 < result.grey_share < 0.2
    assert iou(result.mask, ink == 0) > 0.7 and result.mask.sum() < 1.3 * (ink == 0).sum()


def test_a_stamp_over_half_the_page_keeps_its_polarity(tmp_path):
    region_map = np.full((100, 80), 255, np.uint8)
    region_map[5:95, 4:76] = 0  # 81% of the page
    result = foreground(region_map)

    assert result.mask.sum() == 90 * 72 and not result.mask[0].any()


def test_outline_only_region_map_is_filled_and_said(messy, caplog):
    files = inked(messy)
    before = read_scan(files)
    filled = read_gray(files.region_map) == 0
    outline = filled & ~cv2.erode(filled.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
    cv2.imwrite(str(files.region_map), np.where(outline, 0, 255).astype(np.uint8))
    after = read_scan(files)

    np.testing.assert_array_equal(after.boxes, before.boxes)
    np.testing.assert_array_equal(after.masks, before.masks)
    with caplog.at_level(logging.WARNING):
        InstanceDataModule(source=StaverSource(root=messy), val_fraction=0.2, test_fraction=0.2).setup()
    (warning,) = [r.getMessage() for r in caplog.records if "outlines" in r.getMessage()]
    assert warning.startswith("1 of 6 region maps hold stamp outlines")


def test_fill_holes_leaves_filled_regions_alone():
    regions = np.zeros((30, 30), bool)
    regions[5:15, 5:15] = True
    filled, added = fill_holes(regions)

    assert added == 0 and (filled == regions).all()


def test_black_on_transparent_maps_and_a_transparent_scan(messy):
    """RGBA files whose transparent pixels are black: maps read as black on white, the scan as white paper."""
    files = inked(messy)
    before = read_scan(files)
    for path in (files.region_map, files.pixel_gt):
        marked = read_gray(path) == 0
        rgba = np.zeros((*marked.shape, 4), np.uint8)  # transparent black ...
        rgba[marked, 3] = 255  # ... with opaque black marks
        Image.fromarray(rgba, "RGBA").save(path)
    scan = read_rgb(files.scan)
    rgba = np.zeros((*scan.shape[:2], 4), np.uint8)
    ink = before.masks.any(0)
    rgba[ink, :3], rgba[ink, 3] = scan[ink], 255  # the ink alone, on a transparent (black) background
    Image.fromarray(rgba, "RGBA").save(files.scan)
    after = read_scan(files)

    np.testing.assert_array_equal(after.boxes, before.boxes)
    np.testing.assert_array_equal(after.masks, before.masks)
    assert (after.image[~ink] == 255).all()  # paper, not black
    assert (after.image[ink] == scan[ink]).all()


def test_exif_rotated_jpeg_named_png_is_skipped_with_its_reason(messy):
    files = find_scans(messy)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: width and height swap when read
    Image.fromarray(read_rgb(files.scan)).save(files.scan, format="JPEG", exif=exif)
    good, bad = check_scans(find_scans(messy), on_bad_file="skip")

    assert files.key not in {f.key for f in good}
    (problem,) = [b.problem for b in bad]
    assert "size mismatch" in problem and "EXIF orientation 6" in problem and str(files.scan) in problem
    assert read_rgb(files.scan).shape[:2] == read_gray(files.pixel_gt).shape[::-1]  # what the reader would see


def test_every_unused_file_is_reported_with_its_reason(messy, caplog):
    """No input is left out silently: a JPEG scan, a stray note, ground truth without a scan, a hidden file."""
    files = find_scans(messy)[0]
    scans_dir, maps_dir = files.scan.parent, files.region_map.parent
    Image.fromarray(read_rgb(files.scan)).save(scans_dir / "photo.jpg")
    (scans_dir / "notes.txt").write_text("x")
    (scans_dir / ".DS_Store").write_bytes(b"\0")
    shutil.copy(files.region_map, maps_dir / "stampDS-09999-gt.png")
    with caplog.at_level(logging.WARNING):
        datamodule = InstanceDataModule(source=StaverSource(root=messy), val_fraction=0.2, test_fraction=0.2)
        datamodule.setup()
    stray = datamodule.summary()["stray_files"]
    assert stray == [
        f"{scans_dir / '.DS_Store'}: a hidden file",
        f"{scans_dir / 'notes.txt'}: not a .png scan",
        f"{scans_dir / 'photo.jpg'}: not a .png scan",
        f"{maps_dir / 'stampDS-09999-gt.png'}: no scan <key>.png for it",
    ]
    (warning,) = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert warning.startswith(f"4 files under {messy} are not used: {stray[0]}")


def test_a_map_with_a_few_label_values_keeps_every_region():
    """Regions drawn as different grey levels (a label map): all of them are stamps; a threshold would drop some."""
    region_map = np.zeros((60, 90), np.uint8)
    for i, value in enumerate((50, 100, 150)):
        region_map[10:30, 5 + 30 * i : 25 + 30 * i] = value
    result = foreground(region_map)

    assert result.threshold is None and result.mask.sum() == 3 * 20 * 20

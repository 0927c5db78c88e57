"""The synthetic generator: exact StaVer layout, exact ground truth, determinism, reuse via the marker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlit.core.errors import SamlitError
from samlit.data.staver import label_regions
from samlit.data.synthetic import GENERATOR_VERSION, generate_synthetic_staver, render_scan

SIZE = 96
WIDTH = round(SIZE / 1.414)


def files_under(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writes_the_staver_layout(tmp_path):
    root = generate_synthetic_staver(root=tmp_path / "syn", num_scans=3, image_size=SIZE, seed=0)

    assert root == tmp_path / "syn"
    keys = ["stampDS-00001", "stampDS-00002", "stampDS-00003"]
    expected = {f"scans/scans/{k}.png" for k in keys}
    expected |= {f"ground-truth-pixel/ground-truth-pixel/{k}-px.png" for k in keys}
    expected |= {f"ground-truth-maps/ground-truth-maps/{k}-gt.png" for k in keys}
    assert set(files_under(root)) == expected | {"synthetic.json"}  # no temp or partial marker left
    marker = json.loads((root / "synthetic.json").read_text())
    assert marker == {"generator_version": GENERATOR_VERSION, "num_scans": 3, "image_size": SIZE, "seed": 0}
    for key in keys:
        with Image.open(root / f"scans/scans/{key}.png") as scan:
            assert (scan.mode, scan.size) == ("RGB", (WIDTH, SIZE))
        for path in (
            root / f"ground-truth-pixel/ground-truth-pixel/{key}-px.png",
            root / f"ground-truth-maps/ground-truth-maps/{key}-gt.png",
        ):
            with Image.open(path) as gt:
                assert (gt.mode, gt.size) == ("L", (WIDTH, SIZE))
            values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert values.dtype == np.uint8 and values.ndim == 2
            assert set(np.unique(values)) <= {0, 255}


def test_files_hold_exactly_what_render_scan_returns(tmp_path):
    root = generate_synthetic_staver(root=tmp_path, num_scans=2, image_size=SIZE, seed=5)

    scan = render_scan(rng=np.random.default_rng([5, 1]), image_size=SIZE)  # scan i = 1 is stampDS-00002
    image = cv2.cvtColor(cv2.imread(str(root / "scans/scans/stampDS-00002.png")), cv2.COLOR_BGR2RGB)
    pixel = cv2.imread(str(root / "ground-truth-pixel/ground-truth-pixel/stampDS-00002-px.png"), 0)
    region = cv2.imread(str(root / "ground-truth-maps/ground-truth-maps/stampDS-00002-gt.png"), 0)
    np.testing.assert_array_equal(image, scan.image)  # lossless
    np.testing.assert_array_equal(pixel == 0, scan.ink)
    np.testing.assert_array_equal(region == 0, scan.regions)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = files_under(generate_synthetic_staver(root=tmp_path / "a", num_scans=3, image_size=SIZE, seed=0))
    again = files_under(generate_synthetic_staver(root=tmp_path / "b", num_scans=3, image_size=SIZE, seed=0))
    other = files_under(generate_synthetic_staver(root=tmp_path / "c", num_scans=3, image_size=SIZE, seed=1))

    assert first == again
    scans = [name for name in first if name.startswith("scans/")]
    assert all(first[name] != other[name] for name in scans)


def test_scan_does_not_depend_on_num_scans(tmp_path):
    two = files_under(generate_synthetic_staver(root=tmp_path / "a", num_scans=2, image_size=SIZE, seed=3))
    four = files_under(generate_synthetic_staver(root=tmp_path / "b", num_scans=4, image_size=SIZE, seed=3))

    assert all(four[name] == content for name, content in two.items() if name != "synthetic.json")


def test_matching_marker_reuses_the_data(tmp_path):
    generate_synthetic_staver(root=tmp_path, num_scans=2, image_size=SIZE, seed=0)
    scan = tmp_path / "scans/scans/stampDS-00001.png"
    scan.write_bytes(b"left alone")  # would be rewritten if the generator ran again

    assert generate_synthetic_staver(root=str(tmp_path), num_scans=2, image_size=SIZE, seed=0) == tmp_path
    assert scan.read_bytes() == b"left alone"


@pytest.mark.parametrize("change", [{"seed": 1}, {"num_scans": 3}, {"image_size": 64}])
def test_other_marker_is_an_error(tmp_path, change):
    generate_synthetic_staver(root=tmp_path, num_scans=2, image_size=SIZE, seed=0)

    with pytest.raises(SamlitError, match="holds other synthetic data") as error:
        generate_synthetic_staver(root=tmp_path, **{"num_scans": 2, "image_size": SIZE, "seed": 0, **change})
    message = str(error.value)
    assert str(tmp_path) in message and "data.root" in message and "\n" not in message


def test_refuses_a_non_empty_directory_without_marker(tmp_path):
    (tmp_path / "scans" / "scans").mkdir(parents=True)
    (tmp_path / "scans" / "scans" / "stampDS-00001.png").write_bytes(b"a real scan")

    with pytest.raises(SamlitError, match="not empty"):
        generate_synthetic_staver(root=tmp_path, num_scans=1, image_size=SIZE, seed=0)
    assert (tmp_path / "scans" / "scans" / "stampDS-00001.png").read_bytes() == b"a real scan"


def test_resumes_an_interrupted_run(tmp_path, monkeypatch):
    import samlit.data.synthetic as synthetic

    real_write_scan = synthetic._write_scan
    calls = []

    def write_then_crash(files, scan):
        calls.append(files.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write_scan(files, scan)

    monkeypatch.setattr(synthetic, "_write_scan", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_staver(root=tmp_path / "a", num_scans=3, image_size=SIZE, seed=0)
    monkeypatch.setattr(synthetic, "_write_scan", real_write_scan)
    assert not (tmp_path / "a" / "synthetic.json").exists()

    resumed = generate_synthetic_staver(root=tmp_path / "a", num_scans=3, image_size=SIZE, seed=0)
    fresh = generate_synthetic_staver(root=tmp_path / "b", num_scans=3, image_size=SIZE, seed=0)
    assert files_under(resumed) == files_under(fresh)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"num_scans": 0}, "data.num_scans"),
        ({"image_size": 32}, "data.image_size"),
        ({"seed": -1}, "data.synthetic_seed"),
    ],
)
def test_bad_arguments_name_the_config_key(tmp_path, kwargs, key):
    with pytest.raises(SamlitError, match=re.escape(key)):
        generate_synthetic_staver(root=tmp_path, **{"num_scans": 1, "image_size": SIZE, "seed": 0, **kwargs})


@pytest.mark.parametrize("image_size", [64, 65, 128, 257, 2048])
def test_render_scan_ground_truth_is_consistent(image_size):
    for i in range(12 if image_size < 2048 else 2):
        scan = render_scan(rng=np.random.default_rng([7, i]), image_size=image_size)
        height, width = image_size, round(image_size / 1.414)
        assert scan.image.shape == (height, width, 3) and scan.image.dtype == np.uint8
        assert scan.ink.shape == scan.regions.shape == (height, width)
        assert scan.boxes.dtype == np.float32 and scan.boxes.shape == (len(scan.boxes), 4)
        assert not (scan.ink & ~scan.regions).any(), "ink outside a region"

        labels, boxes = label_regions(np.where(scan.regions, 0, 255).astype(np.uint8), min_area=1)
        np.testing.assert_array_equal(boxes, scan.boxes)  # one component per stamp, same order
        for label in range(1, len(boxes) + 1):
            stamp = labels == label
            assert stamp.sum() >= 16, "region below the reader's minimum area"
            assert (scan.ink & stamp).any(), "a stamp without ink"


def test_stamp_counts_and_size():
    counts, widths = [], []
    for i in range(150):
        scan = render_scan(rng=np.random.default_rng([11, i]), image_size=128)
        counts.append(len(scan.boxes))
        widths.extend((scan.boxes[:, 2] - scan.boxes[:, 0]) / scan.image.shape[1])
    counts = np.array(counts)

    assert set(counts) <= {0, 1, 2, 3} and {0, 1, 2} <= set(counts)
    assert 0.08 <= (counts == 0).mean() <= 0.3  # about 10-20 % of scans have no stamp
    assert 0.1 <= np.median(widths) <= 0.4  # region boxes are roughly 12-30 % of the page width


def test_stamps_are_coloured_and_printed_over_dark_text():
    ink_saturation, text_fraction = [], []
    for i in range(8):
        scan = render_scan(rng=np.random.default_rng([0, i]), image_size=512)
        if scan.ink.any():
            ink = scan.image[scan.ink].astype(int)
            ink_saturation.append(np.median(ink.max(axis=1) - ink.min(axis=1)))
        paper = scan.image[~scan.regions].astype(int)
        text_fraction.append((paper.max(axis=1) < 160).mean())

    assert len(ink_saturation) >= 4 and np.median(ink_saturation) > 40  # blue / red / violet, not grey
    assert min(text_fraction) > 0.01  # every page has dark text and lines

"""Every image suffix samlit lists a folder by (``IMAGE_SUFFIXES``, one tuple) is one ``read_rgb`` reads."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from samlit.core.images import IMAGE_SUFFIXES, read_gray, read_rgb


def picture() -> np.ndarray:
    ys, xs = np.mgrid[:20, :30]
    return np.stack([xs * 8, ys * 12, (xs + ys) * 5], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_listed_suffix_is_read(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(picture(), cv2.COLOR_RGB2BGR))
    image = read_rgb(path)
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8 and read_gray(path).shape == (20, 30)
    if suffix not in (".jpg", ".jpeg"):  # lossless
        assert np.array_equal(image, picture())


def test_a_bmp_written_by_pillow_is_read_upright(tmp_path):
    """BMP carries no EXIF orientation: Pillow's and OpenCV's reading agree."""
    Image.fromarray(picture()).save(tmp_path / "scan.bmp")
    assert np.array_equal(read_rgb(tmp_path / "scan.bmp"), picture())


def test_one_suffix_list_and_one_file_hash():
    from samlit.core import digests
    from samlit.data import folder, instances
    from samlit.model import download
    from samlit.run import predict

    assert all(module.IMAGE_SUFFIXES is IMAGE_SUFFIXES for module in (instances, folder, predict))
    assert ".bmp" in IMAGE_SUFFIXES and all(s == s.lower() for s in IMAGE_SUFFIXES)
    assert download.file_sha256 is digests.file_sha256

"""Bad data never stops a run by surprise: bad scans are skipped (or raise), stamps without ink are counted, and no
file stops a run with a traceback (issue 26: whatever opening or reading it raises makes it a bad file)."""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlit.core import images
from samlit.core.errors import SamlitError, find_user_error
from samlit.core.images import read_rgb
from samlit.data.checks import image_size
from samlit.data.convert import export_instances
from samlit.data.datamodule import InstanceDataModule
from samlit.data.folder import FolderSource
from samlit.data.staver import StaverSource, check_scans, find_scans
from samlit.data.synthetic import generate_synthetic_staver
from samlit.run.setup import build_datamodule

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


# --- issue 26: no file can stop a run with a traceback; the pixel limit is data.max_image_pixels ---


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_big_png(path: Path, width: int, height: int) -> None:
    """A valid black 8-bit grayscale PNG of ``width`` x ``height``, streamed row by row (a few hundred KB on disk:
    nothing of its size is ever in memory)."""
    stream = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte 0, then the row's pixels
    data = b"".join(stream.compress(row) for _ in range(height)) + stream.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """The issue's scan: 14000 x 13000 = 182 M px, over Pillow's own limit (179 M px: DecompressionBombError)."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    write_big_png(path, 14000, 13000)
    return path


def test_a_14000_x_13000_scan_is_checked_from_its_header_not_refused_by_pillow(staver, big_png, tmp_path, capsys):
    """Issue 26: a StaVer folder holding one 14000 x 13000 scan stopped in ``image_size`` with Pillow's
    DecompressionBombError and a traceback naming no file. Its size is now read (it is under the default
    data.max_image_pixels); over a lower limit it is a bad file named with the memory it would take."""
    root = Path(shutil.copytree(staver, tmp_path / "staver"))
    scan = find_scans(root)[0]
    shutil.copy(big_png, scan.scan)
    assert image_size(scan.scan) == (14000, 13000)
    good, bad = check_scans(find_scans(root), on_bad_file="skip")  # the default limit: only its ground truth differs
    assert len(good) == NUM_SCANS - 1 and [b.key for b in bad] == [scan.key]
    assert f"size mismatch: scan {scan.scan} is 14000x13000 px but {scan.pixel_gt}" in bad[0].problem

    over = f"{scan.scan} is 14000x13000 = 182 M px, over data.max_image_pixels=100000000; it takes 0.51 GiB once read"
    datamodule = InstanceDataModule(source=StaverSource(root=root), max_image_pixels=100_000_000)
    datamodule.setup("fit")
    assert datamodule.summary()["bad_files"] == [f"scan {scan.key}: {over}: raise data.max_image_pixels"]
    with pytest.raises(SamlitError, match=r"data\.on_bad_file=skip") as error:
        InstanceDataModule(source=StaverSource(root=root), max_image_pixels=10**8, on_bad_file="raise").setup("fit")
    assert over in str(error.value) and "\n" not in str(error.value)

    from samlit.launch.data_cli import cli  # data info: the same check, the limit given as its config key

    overrides = ["data=staver", f"data.root={root}", "data.max_image_pixels=100000000", f"paths.root_dir={tmp_path}"]
    assert cli(["info", *overrides]) == 0
    out = capsys.readouterr().out
    assert "1 bad inputs left out" in out and f"left out: scan {scan.key}: {over}" in out


def test_the_pixel_limit_is_a_config_key_mirrored_by_the_datamodule(compose_cfg):
    assert build_datamodule(compose_cfg("debug=fast").data).max_image_pixels == images.MAX_IMAGE_PIXELS == 300_000_000
    assert build_datamodule(compose_cfg("debug=fast", "data.max_image_pixels=1234").data).max_image_pixels == 1234
    for value in (0, 2**31, "many"):
        with pytest.raises(Exception) as error:  # Hydra's instantiate wraps it; the entry points print it alone
            build_datamodule(compose_cfg("debug=fast", f"data.max_image_pixels={value}").data)
        user = str(find_user_error(error.value))
        assert user.startswith(f"data.max_image_pixels={value!r} must be a whole number in [1, 1073741824]"), user


@pytest.fixture(scope="module")
def folder(staver, tmp_path_factory) -> Path:
    """The generated scans as an image/label folder (``<root>/images``, ``<root>/masks``)."""
    out = tmp_path_factory.mktemp("f") / "folder"
    export_instances(StaverSource(root=staver), out=out)
    return out


def tiff_with_compression(path: Path, image: np.ndarray, compression: int | None = None, garble: bool = False) -> None:
    """``image`` as an LZW TIFF, then its Compression tag set to ``compression`` (a codec that is not there) or its
    strip data overwritten (``garble``)."""
    Image.fromarray(image).save(path, compression="tiff_lzw")
    data = bytearray(path.read_bytes())
    start = struct.unpack("<I", data[4:8])[0]
    tags = {}
    for i in range(struct.unpack("<H", data[start : start + 2])[0]):
        entry = start + 2 + 12 * i
        tags[struct.unpack("<H", data[entry : entry + 2])[0]] = entry
    if compression is not None:
        data[tags[259] + 8 : tags[259] + 10] = struct.pack("<H", compression)
    if garble:
        offset, length = (struct.unpack("<I", data[tags[t] + 8 : tags[t] + 12])[0] for t in (273, 279))
        data[offset : offset + length] = b"\xff" * length
    path.write_bytes(bytes(data))


def as_tiff(*, compression: int | None = None, garble: bool = False):
    def make(image: Path, mask: Path, monkeypatch) -> str:
        tiff = image.with_suffix(".tif")
        tiff_with_compression(tiff, read_rgb(image), compression=compression, garble=garble)
        image.unlink()
        return f"{tiff} cannot be decoded (TIFF"

    return make


def truncated_mask(image: Path, mask: Path, monkeypatch) -> str:
    mask.write_bytes(mask.read_bytes()[:-30])  # cut off before its end: no IEND
    return f"{mask} is corrupt ("


def unreadable(image: Path, mask: Path, monkeypatch) -> str:
    if os.geteuid() != 0:
        image.chmod(0)
    else:  # root reads any file: refuse it the way the OS would
        real_open = builtins.open

        def refuse(file, *args, **kwargs):
            if str(file) == str(image):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refuse)
    return f"{image} cannot be read (Permission denied)"


def over_the_limit(image: Path, mask: Path, monkeypatch) -> str:
    """This image and its labels at twice the size of the others, and a limit that only they pass."""
    width, height = Image.open(image).size
    for path, flags in ((image, cv2.INTER_LINEAR), (mask, cv2.INTER_NEAREST)):
        cv2.imwrite(
            str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), None, fx=2, fy=2, interpolation=flags)
        )
    check = FolderSource.check

    def limited(self, records, *, on_bad_file, max_pixels=None):
        return check(self, records, on_bad_file=on_bad_file, max_pixels=width * height)

    monkeypatch.setattr(FolderSource, "check", limited)
    return f"{mask} is {2 * width}x{2 * height} = {4 * width * height} px, over data.max_image_pixels={width * height}"


@pytest.mark.parametrize(
    "break_it",
    [
        truncated_mask,  # a truncated PNG
        as_tiff(compression=50000),  # a TIFF whose codec is not there (Pillow opens its header only)
        as_tiff(garble=True),  # a TIFF whose LZW data is damaged
        unreadable,  # permission denied
        over_the_limit,  # data.max_image_pixels
    ],
    ids=["truncated-png", "tiff-codec", "tiff-damaged", "permission", "pixel-limit"],
)
def test_a_file_that_cannot_be_opened_or_read_is_a_bad_file_named_with_its_reason(
    folder, tmp_path, caplog, monkeypatch, break_it
):
    root = Path(shutil.copytree(folder, tmp_path / "own"))
    image = sorted((root / "images").iterdir())[1]
    needle = break_it(image, root / "masks" / image.name, monkeypatch)
    with caplog.at_level(logging.WARNING):
        good, bad = FolderSource(root=root).check(FolderSource(root=root).find(), on_bad_file="skip")
    assert [b.key for b in bad] == [image.stem] and needle in bad[0].problem, bad
    assert needle in caplog.text and len(good) == NUM_SCANS - 1
    source = FolderSource(root=root)
    for record in good:  # what is left is read without an error
        source.census(record)
        source.read(record)
    with pytest.raises(SamlitError, match=r"data\.on_bad_file=skip") as error:
        FolderSource(root=root).check(FolderSource(root=root).find(), on_bad_file="raise")
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_reading_an_image_names_the_file_whatever_opencv_says(tmp_path, big_png, monkeypatch):
    """predict.py and every reader: an image over OpenCV's own pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS, which it
    enforces with an exception) or one its decoder gives up on is one line naming it; Pillow's limit does not stop
    the header of a 182 M px scan (before: DecompressionBombError)."""
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), np.zeros((96, 68, 3), np.uint8))
    monkeypatch.setattr(images, "OPENCV_MAX_PIXELS", 5000)
    with pytest.raises(SamlitError, match=rf"^{path} is 68x96 px, more than OpenCV reads \(5000 px; it would take"):
        read_rgb(path)
    monkeypatch.undo()

    def give_up(*args):
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp:79: error: (-215:Assertion failed) in 'validateInputImageSize'")

    monkeypatch.setattr(images.cv2, "imread", give_up)
    with pytest.raises(SamlitError, match=rf"^{path} is not a readable image \(.*validateInputImageSize"):
        read_rgb(path)
    monkeypatch.setattr(images.cv2, "imread", lambda *args: np.zeros((4, 4, 3), np.uint8))  # no 546 MB decode here
    assert read_rgb(big_png).shape == (4, 4, 3)  # the header was read: no DecompressionBombError

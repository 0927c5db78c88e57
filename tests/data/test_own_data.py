"""Your own data (issue 14): COCO instance JSON and image/label folders, written from generated scans by
``samlit.data.convert`` and read back; every bad input of the issue's list."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlit.core.errors import SamlitError
from samlit.core.images import read_rgb
from samlit.data.coco import CocoSource, decode
from samlit.data.convert import coco_annotation, export_instances
from samlit.data.datamodule import InstanceDataModule
from samlit.data.folder import FolderSource
from samlit.data.staver import StaverSource
from samlit.data.store import Store
from samlit.data.synthetic import generate_synthetic_staver


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """12 generated scans (256 px) written as COCO + label folder: <out>/images, instances.json, masks."""
    tmp = tmp_path_factory.mktemp("own")
    root = generate_synthetic_staver(root=tmp / "staver", num_scans=12, image_size=256, seed=5)
    export_instances(StaverSource(root=root), out=tmp / "out")
    return tmp / "out"


@pytest.fixture
def data(exported, tmp_path) -> Path:
    """A private copy a test may break."""
    return Path(shutil.copytree(exported, tmp_path / "data"))


def coco(data: Path, **kwargs) -> CocoSource:
    return CocoSource(images=data / "images", annotations=data / "instances.json", **kwargs)


def read_all(source) -> list:
    records, bad = source.check(source.find(), on_bad_file="skip")
    return [source.read(r) for r in records], bad


def edit_json(data: Path, change) -> dict:
    path = data / "instances.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))
    return content


def test_coco_and_folder_read_the_same_instances(exported):
    from_coco, bad_coco = read_all(coco(exported))
    from_folder, bad_folder = read_all(FolderSource(root=exported))

    assert not bad_coco and not bad_folder and len(from_coco) == len(from_folder) == 12
    for a, b in zip(from_coco, from_folder, strict=True):
        assert a.key == b.key and np.array_equal(a.image, b.image)
        assert np.array_equal(a.masks, b.masks) and np.array_equal(a.boxes, b.boxes)
        for mask, box in zip(a.masks, a.boxes, strict=True):  # tight box [x_min, y_min, x_max + 1, y_max + 1]
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_the_same_images_give_the_same_split_from_either_source(exported):
    modules = [
        InstanceDataModule(source=coco(exported), seed=3),
        InstanceDataModule(source=FolderSource(root=exported), seed=3),
    ]
    for module in modules:
        module.setup()
    assert [[f.key for f in m.splits[s]] for m in modules for s in ("train", "val", "test")][:3] == [
        [f.key for f in modules[1].splits[s]] for s in ("train", "val", "test")
    ]


def test_polygons_and_uncompressed_rle_decode_like_compressed_rle(exported):
    content = json.loads((exported / "instances.json").read_text())
    image = content["images"][0]
    square = np.zeros((image["height"], image["width"]), bool)
    square[10:20, 30:45] = True
    polygon = [[30, 10, 45, 10, 45, 20, 30, 20]]  # pixel corners: pycocotools fills the polygon's inside
    from_polygon = decode(polygon, height=image["height"], width=image["width"])
    assert abs(int(from_polygon.sum()) - 150) <= 30 and from_polygon[12:18, 32:43].all()
    flat = square.ravel(order="F")  # uncompressed RLE: run lengths in column-major order, first run of zeros
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat.astype(int), [2]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    counts[-1] = flat.size - sum(counts[:-1])
    uncompressed = {"size": [image["height"], image["width"]], "counts": counts}
    compressed = coco_annotation(square, id=1, image_id=1)["segmentation"]
    assert np.array_equal(decode(uncompressed, height=image["height"], width=image["width"]), square)
    assert np.array_equal(decode(compressed, height=image["height"], width=image["width"]), square)


def test_crowd_other_categories_and_a_given_split(data):
    def change(content):
        content["categories"].append({"id": 2, "name": "signature"})
        first, second = content["annotations"][:2]
        first["iscrowd"] = 1
        second["category_id"] = 2

    content = edit_json(data, change)
    source = coco(data, categories=["stamp"])
    read_all(source)
    counts = source.counts([])
    assert counts["crowd_annotations"] == 1 and counts["annotations_other_category"] == 1
    assert counts["instances_per_category"] == {"stamp": len(content["annotations"]) - 2}
    with pytest.raises(SamlitError, match=r"data.categories: \['tree'\] not in"):
        coco(data, categories=["tree"]).find()

    split = {name: data / f"{name}.json" for name in ("train", "val", "test")}
    for i, path in enumerate(split.values()):  # the images, dealt round-robin to three files
        images = content["images"][i::3]
        ids = {im["id"] for im in images}
        annotations = [a for a in content["annotations"] if a["image_id"] in ids and not a.get("iscrowd")]
        path.write_text(json.dumps({**content, "images": images, "annotations": annotations}))
    module = InstanceDataModule(source=CocoSource(images=data / "images", annotations=split), val_fraction=0.5)
    module.setup()
    for i, name in enumerate(("train", "val", "test")):
        given = {Path(im["file_name"]).stem for im in content["images"][i::3]}
        assert {f.key for f in module.splits[name]} <= given and module.splits[name]


def test_a_store_key_follows_an_images_own_annotations_only(data, tmp_path):
    """COCO: the annotations are not a file of the image; an edited annotation moves that image's entries only
    (another JSON with the same content for the others keeps theirs)."""

    def identities() -> dict[str, str]:
        module = InstanceDataModule(source=coco(data), store=Store(root=tmp_path / "store"))
        module.setup()
        return {f.key: module.identity(f) for files in module.splits.values() for f in files}

    before = identities()
    content = edit_json(data, lambda c: c["annotations"][0].update(bbox=[1, 2, 3, 4]))
    edited = next(
        Path(im["file_name"]).stem for im in content["images"] if im["id"] == content["annotations"][0]["image_id"]
    )
    after = identities()
    assert after.keys() == before.keys() and after[edited] != before[edited]
    assert all(after[k] == before[k] for k in before if k != edited)
    folder = InstanceDataModule(source=FolderSource(root=data), store=Store(root=tmp_path / "store"))
    folder.setup()
    assert not {folder.identity(f) for files in folder.splits.values() for f in files} & set(before.values())


# --- bad inputs: each a warning naming the file and what was left out, or one line with on_bad_file=raise ---


def check_bad(make, needle: str, caplog) -> list:
    """``make()`` builds the source: skipped with a warning naming the problem, or one line with ``raise``."""
    source = make()
    with caplog.at_level(logging.WARNING):
        records, bad = source.check(source.find(), on_bad_file="skip")
    assert any(needle in b.problem for b in bad), [b.problem for b in bad]
    assert any(needle in r.getMessage() for r in caplog.records)
    source = make()
    with pytest.raises(SamlitError, match=r"data\.on_bad_file=skip") as error:
        source.check(source.find(), on_bad_file="raise")
    assert "\n" not in str(error.value)
    return records


def test_malformed_json_is_one_line(data):
    (data / "instances.json").write_text('{"images": [')
    with pytest.raises(SamlitError, match=r"instances.json is not valid JSON \(.*\); export it again"):
        coco(data).find()


def test_unknown_image_id(data, caplog):
    edit_json(data, lambda c: c["annotations"].append({**c["annotations"][0], "id": 999, "image_id": 4242}))
    check_bad(lambda: coco(data), "has image_id 4242, which no image has: left out", caplog)


def test_missing_or_unreadable_image(data, caplog):
    first = sorted((data / "images").iterdir())[0]
    first.write_bytes(b"not a png")
    records = check_bad(lambda: coco(data), f"{first} is not an image", caplog)
    assert first.stem not in {r.key for r in records}


def test_polygon_with_fewer_than_3_points(data, caplog):
    edit_json(data, lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3, 4]]))
    check_bad(lambda: coco(data), "a polygon with fewer than 3 points (2)", caplog)


def test_empty_mask(data, caplog):
    edit_json(data, lambda c: c["annotations"][0].update(segmentation=[]))
    check_bad(lambda: coco(data), "no segmentation (an empty mask)", caplog)


def test_a_segmentation_that_covers_no_pixel_is_named(data, caplog):
    content = edit_json(data, lambda c: c["annotations"][0].update(segmentation=[[5, 5, 5, 5, 5, 5]]))
    module = InstanceDataModule(source=coco(data))
    with caplog.at_level(logging.WARNING):
        module.setup()
    first = content["annotations"][0]
    name = next(im["file_name"] for im in content["images"] if im["id"] == first["image_id"])
    (warning,) = [r.getMessage() for r in caplog.records if "empty mask" in r.getMessage()]
    assert warning.startswith("1 annotations have an empty mask (their segmentation covers no pixel)")
    assert f"annotation {first['id']} of {name} left out" in warning
    assert module.summary()["instances_without_ink"] == 1


def test_bbox_outside_the_image(data, caplog):
    edit_json(data, lambda c: c["annotations"][0].update(bbox=[5000, 10, 20, 20]))
    check_bad(lambda: coco(data), "bbox [5000, 10, 20, 20] outside the", caplog)


def test_two_images_with_the_same_stem(data, caplog):
    def change(content):
        shutil.copy(data / "images" / content["images"][0]["file_name"], data / "images" / "copy.jpg")
        first = content["images"][0]
        content["images"].append({**first, "id": 777, "file_name": "copy.jpg"})
        Path(data / "images" / "copy.jpg").rename(data / "images" / f"{Path(first['file_name']).stem}.jpg")
        content["images"][-1]["file_name"] = f"{Path(first['file_name']).stem}.jpg"

    edit_json(data, change)
    check_bad(lambda: coco(data), "share the stem", caplog)


def test_mask_of_another_size_than_its_image(data, caplog):
    mask = sorted((data / "masks").iterdir())[0]
    cv2.imwrite(str(mask), np.zeros((10, 10), np.uint8))
    check_bad(lambda: FolderSource(root=data), "size mismatch", caplog)


def test_label_image_saved_as_rgb(data, caplog):
    mask = sorted((data / "masks").iterdir())[0]
    labels = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    Image.fromarray(np.stack([labels] * 3, axis=-1).astype(np.uint8)).save(mask)
    check_bad(lambda: FolderSource(root=data), "is a RGB image, not a label image", caplog)


def test_root_or_images_missing_is_one_line(tmp_path):
    with pytest.raises(SamlitError, match=f"data.images={tmp_path}/nope does not exist"):
        CocoSource(images=tmp_path / "nope", annotations=tmp_path / "a.json").find()
    with pytest.raises(SamlitError, match=r"data\.images is not set"):
        CocoSource(images=None, annotations=tmp_path / "a.json")
    with pytest.raises(SamlitError, match=f"data.root: {tmp_path}/nope does not exist"):
        FolderSource(root=tmp_path / "nope").find()


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "RGBA"])
def test_grayscale_palette_16_bit_and_rgba_images_read_as_rgb(data, mode):
    image_path = sorted((data / "images").iterdir())[0]
    rgb = read_rgb(image_path)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if mode == "I;16":
        cv2.imwrite(str(image_path), gray.astype(np.uint16) * 257)
    elif mode == "RGBA":
        Image.fromarray(np.dstack([rgb, np.full(gray.shape, 255, np.uint8)]), "RGBA").save(image_path)
    else:
        Image.fromarray(gray).convert(mode).save(image_path)
    samples, bad = read_all(FolderSource(root=data))
    assert not bad
    sample = next(s for s in samples if s.key == image_path.stem)
    assert sample.image.shape == (*gray.shape, 3) and sample.image.dtype == np.uint8
    expected = rgb if mode == "RGBA" else np.repeat(gray[..., None], 3, axis=2)
    assert np.abs(sample.image.astype(int) - expected).max() <= 1


def test_exif_rotated_jpeg_is_applied_and_said(data, caplog):
    """A JPEG whose pixels are stored turned, with the EXIF orientation that shows it upright (a phone photo):
    read upright, so it matches its annotations, and said once."""
    image_path = sorted((data / "images").iterdir())[0]
    upright = read_rgb(image_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # so the stored pixels are turned the other way
    jpeg = image_path.with_suffix(".jpg")
    Image.fromarray(stored).save(jpeg, quality=98, exif=exif)
    image_path.unlink()
    renamed = {image_path.name: jpeg.name}
    edit_json(
        data, lambda c: [im.update(file_name=renamed.get(im["file_name"], im["file_name"])) for im in c["images"]]
    )
    with caplog.at_level(logging.WARNING):
        samples, bad = read_all(coco(data))
    assert not bad
    sample = next(s for s in samples if s.key == image_path.stem)
    assert sample.image.shape == upright.shape and np.abs(sample.image.astype(int) - upright).mean() < 4
    assert any("1 images carry an EXIF orientation" in r.getMessage() for r in caplog.records)


def test_data_info_and_export_cli(exported, tmp_path, capsys):
    from samlit.launch.data_cli import cli

    coco_args = ["data=coco", f"data.images={exported}/images", f"data.annotations={exported}/instances.json"]
    assert cli(["info", *coco_args, f"paths.root_dir={tmp_path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data: {exported}/images (coco)"
    assert lines[1].startswith("images: 12 read, 0 bad inputs left out")
    assert lines[3].startswith("instances per category: {'stamp': ")
    assert lines[5].startswith("split (seeded (seed 0)): train ")

    out = tmp_path / "again"
    assert cli(["export", *coco_args, f"paths.root_dir={tmp_path}", "--out", str(out)]) == 0
    assert json.loads((out / "instances.json").read_text())["annotations"]
    assert cli(["export", *coco_args, f"paths.root_dir={tmp_path}", "--out", str(out)]) == 2  # never overwritten
    assert "already exists; it is not overwritten" in capsys.readouterr().err
    assert cli(["info", "data=coco", f"paths.root_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err.startswith("error: data.images is not set")

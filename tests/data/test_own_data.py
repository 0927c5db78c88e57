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
    records, _ = source.check(source.find(), on_bad_file="skip")
    census = [source.census(r) for r in records]
    counts = source.counts(census)
    assert counts["crowd_annotations"] == 1 and counts["annotations_other_category"] == 1
    assert counts["instances_per_category"] == {"stamp": len(content["annotations"]) - 2}
    assert counts["instances_per_category"]["stamp"] == sum(c.instances for c in census)
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


# --- issue 26: every field a setting reads is checked up front; one census; an export is all or nothing ---


def first_annotation_and_image(content: dict) -> tuple[dict, str]:
    first = content["annotations"][0]
    return first, next(im["file_name"] for im in content["images"] if im["id"] == first["image_id"])


def test_an_annotation_without_bbox_is_named_when_box_source_reads_it(data, caplog, tmp_path, capsys):
    """data.box_source=annotation reads COCO's bbox: an annotation without one is a bad input at find/check time
    (named), not a ``cannot reshape array`` in a loader worker; with box_source=mask nothing reads it."""
    content = edit_json(data, lambda c: c["annotations"][0].pop("bbox"))
    first, name = first_annotation_and_image(content)
    needle = f"annotation {first['id']} ({name}): no bbox, which data.box_source=annotation reads"
    records = check_bad(lambda: coco(data, box_source="annotation"), needle, caplog)
    source = coco(data, box_source="annotation")
    samples = [source.read(r) for r in records]  # every record left reads, boxes from the bboxes
    assert sum(len(s.boxes) for s in samples) == len(content["annotations"]) - 1
    assert all(s.boxes.shape == (len(s.masks), 4) for s in samples)

    by_mask, bad = read_all(coco(data))  # box_source=mask never reads bbox: the annotation is an instance
    assert not bad and sum(len(s.boxes) for s in by_mask) == len(content["annotations"])

    from samlit.launch.data_cli import cli

    args = ["data=coco", f"data.images={data}/images", f"data.annotations={data}/instances.json"]
    assert cli(["info", *args, "data.box_source=annotation", f"paths.root_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "1 bad inputs left out" in out and f"left out: {data}/instances.json: {needle}" in out


@pytest.mark.parametrize(
    "change,kwargs,needle",
    [  # each crashed (or was read silently wrong) before; each a setting's field or one every image needs
        (lambda a, i: a.pop("category_id"), {"categories": ["stamp"]}, "no category_id, which data.categories reads"),
        (lambda a, i: a.update(category_id=99), {"categories": ["stamp"]}, "category_id 99, which no category of"),
        (lambda a, i: a.update(iscrowd="yes"), {}, "iscrowd 'yes', which is neither 0 nor 1"),
        (lambda a, i: a.update(bbox=[1, 2, 3]), {}, "bbox [1, 2, 3] is not [x, y, width, height] (four numbers)"),
        (lambda a, i: a.update(bbox=[1, 2, 0, 5]), {"box_source": "annotation"}, "bbox [1, 2, 0, 5] has no area"),
        (lambda a, i: i.update(width="wide"), {}, "has width, height ['wide', "),
        (
            lambda a, i: a.update(segmentation={"size": [i["height"], i["width"]], "counts": "zz"}),
            {},
            "a compressed RLE whose counts do not decode to its size",
        ),
        (lambda a, i: a.update(segmentation={"size": 7, "counts": "zz"}), {}, "an RLE whose size 7 is not"),
    ],
)
def test_every_field_a_setting_reads_is_checked_up_front(data, caplog, change, kwargs, needle):
    def edit(content):
        first = content["annotations"][0]
        change(first, next(im for im in content["images"] if im["id"] == first["image_id"]))

    content = edit_json(data, edit)
    records = check_bad(lambda: coco(data, **kwargs), needle, caplog)
    source = coco(data, **kwargs)
    for record in records:  # what is left reads and counts without an error
        source.census(record)
        source.read(record)
    assert len(records) >= len(content["images"]) - 1


def test_an_image_in_two_split_files_is_named(data, caplog):
    """data.annotations={train, val, test}: an image listed in two split files is named (kept in the first)."""
    content = json.loads((data / "instances.json").read_text())
    split = {name: data / f"{name}.json" for name in ("train", "val", "test")}
    for i, path in enumerate(split.values()):
        images = content["images"][i::3] + (content["images"][:1] if i == 2 else [])  # image 0 also in test
        ids = {im["id"] for im in images}
        path.write_text(json.dumps({**content, "images": images, "annotations": [
            a for a in content["annotations"] if a["image_id"] in ids
        ]}))  # fmt: skip
    name = content["images"][0]["file_name"]
    needle = f"{data}/images/{name} is in both {split['train']} (train) and {split['test']} (test): kept in train"
    check_bad(lambda: CocoSource(images=data / "images", annotations=split), needle, caplog)


def test_instances_per_category_is_the_census_after_filtering(data, tmp_path, capsys):
    """Issue 26: ``instances per category: {'object': 16}`` beside ``instances: 10 used``. The per-category counts
    are the instances used (after empty masks and specks are dropped), with what was dropped beside them."""

    def change(content):
        content["categories"] = [{"id": 1, "name": "object"}, {"id": 2, "name": "tiny"}]
        first, second, third = content["annotations"][:3]
        first["segmentation"] = [[5, 5, 5, 5, 5, 5]]  # covers no pixel
        second["segmentation"] = [[1, 1, 4, 1, 4, 4, 1, 4]]  # a 3x3 speck, below min_region_area=16
        third["category_id"] = 2
        third["segmentation"] = [[1, 1, 3, 1, 3, 3, 1, 3]]  # the only "tiny": a speck too
        for ann in (first, second, third):
            ann.pop("bbox")

    content = edit_json(data, change)
    module = InstanceDataModule(source=coco(data))
    module.setup()
    summary = module.summary()
    used = sum(module.instances.values())
    assert used == len(content["annotations"]) - 3
    assert summary["instances_per_category"] == {"object": used, "tiny": 0}
    assert summary["instances_left_out_per_category"] == {
        "object": {"without_ink": 1, "below_min_area": 1},
        "tiny": {"below_min_area": 1},
    }
    assert sum(summary[f"{s}_instances"] for s in ("train", "val", "test")) == used  # the splits agree too

    from samlit.launch.data_cli import cli

    args = ["data=coco", f"data.images={data}/images", f"data.annotations={data}/instances.json"]
    assert cli(["info", *args, f"paths.root_dir={tmp_path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith(f"instances: {used} used, 1 empty, 2 below data.min_region_area=16 px")
    assert lines[3] == (
        f"instances per category: {{'object': {used}, 'tiny': 0}}; left out: object 1 empty, 1 below "
        "data.min_region_area; tiny 1 below data.min_region_area"
    )


def overlapping(data: Path) -> str:
    """Give the first image a second annotation over its first one; returns that image's stem."""
    content = edit_json(data, lambda c: c["annotations"].append({**c["annotations"][0], "id": 9999}))
    return Path(first_annotation_and_image(content)[1]).stem


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_export_leaves_nothing_and_names_coco_only(data, tmp_path):
    """Issue 26: export on overlapping instances stopped with a clear line but left images/pair00.png, and its
    hint "use COCO alone" named no option. Now nothing is written, and the hint is --coco-only, which works."""
    stem = overlapping(data)
    out = tmp_path / "out"
    with pytest.raises(SamlitError) as error:
        export_instances(coco(data), out=out)
    message = str(error.value)
    assert message.startswith(f"{stem}: instances overlap") and "pass --coco-only" in message
    assert not out.exists() and leftovers(tmp_path) == []

    counts = export_instances(coco(data), out=out, labels=False)  # --coco-only
    written = json.loads((out / "instances.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances.json"] and leftovers(tmp_path) == []
    assert counts["instances"] == len(written["annotations"]) and len(list((out / "images").iterdir())) == 12


def test_an_export_into_an_existing_folder_is_all_or_nothing(data, tmp_path, monkeypatch):
    """Another failure (a read error half way) into a folder that holds other files: they stay, nothing is added;
    a folder holding part of an export is refused; a whole export adds its three entries beside the others."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    source = coco(data)
    real_read, calls = source.read, []

    def read_then_fail(record):
        calls.append(record.key)
        if len(calls) == 5:
            raise SamlitError(f"{record.path} is not a readable image")
        return real_read(record)

    monkeypatch.setattr(source, "read", read_then_fail)
    with pytest.raises(SamlitError, match="is not a readable image"):
        export_instances(source, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and leftovers(tmp_path) == []

    assert export_instances(coco(data), out=out)["images"] == 12
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances.json", "masks", "notes.txt"]
    (out / "instances.json").unlink()  # an export's folders without its JSON: still not overwritten
    with pytest.raises(SamlitError, match=rf"{out}/images already exists; it is not overwritten: pass another --out"):
        export_instances(coco(data), out=out)
    (tmp_path / "file").write_text("")
    with pytest.raises(SamlitError, match=r"--out .*/file is a file: pass a folder"):
        export_instances(coco(data), out=tmp_path / "file")


def test_data_export_takes_out_before_or_after_the_overrides(data, tmp_path, capsys):
    """Issue 26: ``python -m samlit.data export --out DIR <overrides>`` (the README's order) failed with
    ``unrecognized arguments``; options and overrides now come in any order, --coco-only too."""
    from samlit.launch.data_cli import cli

    args = ["data=coco", f"data.images={data}/images", f"data.annotations={data}/instances.json"]
    root = f"paths.root_dir={tmp_path}"
    orders = {
        "before": ["export", "--out", str(tmp_path / "before"), *args, root],
        "after": ["export", *args, root, "--out", str(tmp_path / "after")],
        "between": ["export", args[0], f"--out={tmp_path / 'between'}", *args[1:], root],
    }
    for name, argv in orders.items():
        assert cli(argv) == 0, capsys.readouterr().err
        assert json.loads((tmp_path / name / "instances.json").read_text())["annotations"]
        assert (tmp_path / name / "masks").is_dir()
    stem = overlapping(data)
    assert cli(["export", "--out", str(tmp_path / "over"), *args, root]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {stem}: instances overlap") and line.endswith("instances.json and images/ alone")
    assert not (tmp_path / "over").exists()
    assert cli(["export", "--coco-only", "--out", str(tmp_path / "over"), *args, root]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'over'}: instances.json, images/")
    assert not (tmp_path / "over" / "masks").exists()

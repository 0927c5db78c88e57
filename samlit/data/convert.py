"""Write any source's images and instances as a COCO instance JSON (compressed RLE) and as an image/label folder:

    <out>/images/<key>.png         the images (one copy, shared by both layouts)
    <out>/instances.json           COCO: one annotation per instance, segmentation = compressed RLE
    <out>/masks/<key>.png          instance labels 1..N in canonical order (8-bit, or 16-bit past 255 instances)

So ``data=coco data.images=<out>/images data.annotations=<out>/instances.json`` and ``data=folder
data.root=<out>`` read the same instances: the tests train on both and compare. Overlapping instances fit COCO
only (``labels=False``, ``python -m samlit.data export --coco-only``). All or nothing: the export is written into
a temp folder beside ``<out>`` and moved into place at the end, so one that fails leaves ``<out>`` as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from samlit.core import atomic
from samlit.core.atomic import write_error
from samlit.core.errors import SamlitError
from samlit.core.images import MAX_IMAGE_PIXELS, write_png
from samlit.data.sample import with_ink
from samlit.data.source import Source

EXPORT_NAMES = ("images", "masks", "instances.json")  # what an export writes under <out> (the JSON last)
COCO_ONLY = "--coco-only"  # the data CLI's option for labels=False


def check_out(out: Path | str) -> None:
    """One line when ``out`` cannot take an export: a file, or a folder that already holds part of one (nothing
    is ever overwritten)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SamlitError(f"--out {out} is a file: pass a folder (made if missing)")
    for name in EXPORT_NAMES:
        if os.path.lexists(out / name):
            raise SamlitError(f"{out / name} already exists; it is not overwritten: pass another --out")


def export_instances(
    source: Source,
    *,
    out: Path | str,
    category: str = "stamp",
    on_bad_file: str = "skip",
    labels: bool = True,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> dict:
    """Write every good record of ``source`` (``on_bad_file``, ``max_pixels``: as ``Source.check``) under ``out``:
    COCO and, with ``labels``, the label folder; returns counts (images, instances). ``out`` may exist but must not
    hold any of ``EXPORT_NAMES``. Nothing appears under ``out`` unless the whole export succeeds."""
    out = Path(out)
    check_out(out)
    records, _ = source.check(source.find(), on_bad_file=on_bad_file, max_pixels=max_pixels)
    images, annotations = [], []
    with staged(out) as stage:
        for image_id, record in enumerate(records, start=1):
            sample = with_ink(source.read(record))
            height, width = sample.image.shape[:2]
            write_png(stage / "images" / f"{record.key}.png", sample.image)
            images.append({"id": image_id, "file_name": f"{record.key}.png", "width": width, "height": height})
            label_image = np.zeros((height, width), np.uint16 if len(sample.masks) > 255 else np.uint8)
            for number, mask in enumerate(sample.masks, start=1):
                if labels and (label_image[mask] != 0).any():
                    raise SamlitError(
                        f"{record.key}: instances overlap, which a label image (masks/) cannot hold; nothing was "
                        f"written: pass {COCO_ONLY} to write instances.json and images/ alone"
                    )
                label_image[mask] = number
                annotations.append(coco_annotation(mask, id=len(annotations) + 1, image_id=image_id))
            if labels:
                ok, png = cv2.imencode(".png", label_image)
                if not ok:
                    raise SamlitError(f"cannot encode the label image of {record.key}")
                atomic.write_bytes(stage / "masks" / f"{record.key}.png", png.tobytes())
        coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": category}]}
        atomic.write_text(stage / "instances.json", json.dumps(coco))
    return {"images": len(images), "instances": len(annotations)}


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new folder beside ``out`` to write into. When the block ends without error its entries are moved into
    ``out`` (``move_into``); the folder is removed either way. An ``OSError`` making or moving it is one line naming
    ``out``."""
    stage = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
    except OSError as error:
        raise write_error(out, error) from error
    try:
        yield stage
        try:
            move_into(stage, out)
        except OSError as error:
            raise write_error(out, error) from error
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def move_into(stage: Path, out: Path) -> None:
    """``stage`` becomes ``out`` in one rename when ``out`` does not exist yet; else its ``EXPORT_NAMES`` are moved
    into ``out`` one by one (``instances.json`` last), and moved back if one move fails."""
    if not out.exists():
        os.rename(stage, out)
        return
    moved: list[Path] = []
    try:
        for name in EXPORT_NAMES:
            if (stage / name).exists():
                os.rename(stage / name, out / name)
                moved.append(out / name)
    except OSError:
        for path in moved:
            os.rename(path, stage / path.name)
        raise


def coco_annotation(mask: np.ndarray, *, id: int, image_id: int, category_id: int = 1) -> dict[str, Any]:
    """One COCO annotation of a (H, W) bool mask: compressed RLE (``counts`` as text), area and tight bbox."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = (float(v) for v in coco_mask.toBbox(rle))
    return {
        "id": id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": float(coco_mask.area(rle)),
        "bbox": [x, y, w, h],
        "iscrowd": 0,
    }

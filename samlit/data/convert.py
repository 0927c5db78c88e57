"""Write any source's images and instances as a COCO instance JSON (compressed RLE) and as an image/label folder:

    <out>/images/<key>.png         the images (one copy, shared by both layouts)
    <out>/instances.json           COCO: one annotation per instance, segmentation = compressed RLE
    <out>/masks/<key>.png          instance labels 1..N in canonical order (8-bit, or 16-bit past 255 instances)

So ``data=coco data.images=<out>/images data.annotations=<out>/instances.json`` and ``data=folder
data.root=<out>`` read the same instances: the tests train on both and compare. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.core.images import write_png
from samlit.data.sample import with_ink
from samlit.data.source import Source


def export_instances(source: Source, *, out: Path | str, category: str = "stamp", on_bad_file: str = "skip") -> dict:
    """Write every good record of ``source`` under ``out`` in both layouts; returns counts (images, instances)."""
    out = Path(out)
    records, _ = source.check(source.find(), on_bad_file=on_bad_file)
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        sample = with_ink(source.read(record))
        height, width = sample.image.shape[:2]
        write_png(out / "images" / f"{record.key}.png", sample.image)
        images.append({"id": image_id, "file_name": f"{record.key}.png", "width": width, "height": height})
        labels = np.zeros((height, width), np.uint16 if len(sample.masks) > 255 else np.uint8)
        for number, mask in enumerate(sample.masks, start=1):
            if (labels[mask] != 0).any():
                raise SamlitError(f"{record.key}: instances overlap; a label image cannot hold them (use COCO alone)")
            labels[mask] = number
            annotations.append(coco_annotation(mask, id=len(annotations) + 1, image_id=image_id))
        ok, png = cv2.imencode(".png", labels)
        if not ok:
            raise SamlitError(f"cannot encode the label image of {record.key}")
        atomic.write_bytes(out / "masks" / f"{record.key}.png", png.tobytes())
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": category}]}
    atomic.write_text(out / "instances.json", json.dumps(coco))
    return {"images": len(images), "instances": len(annotations)}


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

"""COCO instance JSON as a ``Source`` (``data=coco``), what CVAT, Label Studio and Roboflow export.

``images``: the image folder (``file_name`` is relative to it); ``annotations``: one ``instances.json``, or
``{train: a.json, val: b.json, test: c.json}`` to use the data set's own split instead of the seeded one.
Polygons, compressed and uncompressed RLE are decoded with ``pycocotools``; each annotation is one instance;
``iscrowd: 1`` never becomes a prompt (counted); ``categories`` keeps only those names. An instance's box prompt
is its mask's tight box (``box_source="mask"``) or COCO's own ``bbox`` (``"annotation"``). Records are keyed by
the file stem, so the same images give the same split as any other source.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from samlit.core.errors import SamlitError
from samlit.core.images import MAX_IMAGE_PIXELS, read_rgb
from samlit.data.checks import BadFile, report_problems
from samlit.data.instances import (
    IMAGE_SUFFIXES,
    image_problem,
    instance_census,
    instance_sample,
    warn_orientation,
)
from samlit.data.sample import InstanceCensus, InstanceSample, category_counts

log = logging.getLogger(__name__)
BOX_SOURCES = ("mask", "annotation")
BBOX_TOLERANCE = 1.0  # px a bbox may overhang the image (rounding in exporters) before it counts as outside


@dataclass(frozen=True)
class CocoRecord:
    """One image of the JSON: ``key`` (file stem), ``path``, ``size`` (width, height) as the JSON says, its usable
    annotations (``segmentation``, ``bbox``, ``id``, ``category``), the JSON it came from and its split (or None)."""

    key: str
    path: Path
    size: tuple[int, int]
    annotations: tuple[dict[str, Any], ...] = field(compare=False)
    json: Path
    split: str | None = None


class CocoSource:
    """``Source`` over a COCO instance JSON (or one per split) and its image folder.

    Args:
        images: the image folder. annotations: a JSON path, or ``{train, val, test}`` paths (the user's split).
        root: the folder that relative ``images`` / ``annotations`` paths start from (default: as given).
        categories: names to keep (default: all). box_source: ``mask`` (tight box of the mask) or ``annotation``.
        min_area: instances smaller than this many px are specks (counted, left out).
    """

    def __init__(
        self,
        *,
        images: str | Path,
        annotations: str | Path | Mapping[str, str | Path],
        root: str | Path | None = None,
        categories: Iterable[str] | None = None,
        box_source: str = "mask",
        min_area: int = 16,
    ) -> None:
        if box_source not in BOX_SOURCES:
            raise SamlitError(f"data.box_source={box_source!r} must be one of {', '.join(BOX_SOURCES)}")
        base = Path(root).expanduser() if root else None
        self.images = self._path(images, base, key="data.images")
        if isinstance(annotations, Mapping):
            unknown = set(annotations) - {"train", "val", "test"}
            if unknown:
                raise SamlitError(f"data.annotations has keys {sorted(unknown)}: use train, val and test")
            self.annotations = {
                split: self._path(p, base, key=f"data.annotations.{split}") for split, p in annotations.items()
            }
        else:
            self.annotations = {None: self._path(annotations, base, key="data.annotations")}
        self.root = base or self.images
        self.categories = list(categories) if categories else None
        self.box_source = box_source
        self.min_area = min_area
        self.problems: list[BadFile] = []
        self.empty: list[str] = []  # annotations whose mask decodes to no pixel (found by census)
        self.stats: Counter[str] = Counter()
        self._records: list[CocoRecord] | None = None

    @staticmethod
    def _path(value: str | Path | None, base: Path | None, *, key: str) -> Path:
        if value is None or not str(value).strip():
            raise SamlitError(f"{key} is not set: pass {key}=<path> (data=coco needs data.images and data.annotations)")
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path

    def prepare(self) -> None:
        """Nothing to make: the files are the user's."""

    def find(self) -> list[CocoRecord]:
        if self._records is None:
            if not self.images.is_dir():
                problem = "does not exist" if not self.images.exists() else "is not a folder"
                raise SamlitError(f"data.images={self.images} {problem}: pass the folder that holds the images")
            records: dict[str, CocoRecord] = {}
            for split, path in self.annotations.items():
                for record in self._parse(path, split=split):
                    if record.key in records:
                        first = records[record.key]
                        problem = (
                            f"{record.path} is in both {first.json} ({first.split}) and {record.json} "
                            f"({record.split}): kept in {first.split} alone; list each image in one split file"
                            if first.path == record.path
                            else f"{first.path} and {record.path} share the stem {record.key!r}: {record.path} left out"
                        )
                        self.problems.append(BadFile(record.key, problem))
                    else:
                        records[record.key] = record
            self._records = sorted(records.values(), key=lambda r: r.key)
        return self._records

    def _parse(self, path: Path, *, split: str | None) -> list[CocoRecord]:
        data = load_coco_json(path)
        names = {c.get("id"): str(c.get("name")) for c in data.get("categories", []) if isinstance(c, dict)}
        if self.categories:
            missing = sorted(set(self.categories) - set(names.values()))
            if missing:
                raise SamlitError(f"data.categories: {missing} not in {path} (it has {sorted(set(names.values()))})")
        images: dict[Any, dict[str, Any]] = {}
        for entry in data["images"]:
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("id"), int | str)
                or not isinstance(entry.get("file_name"), str)
                or not entry["file_name"].strip()
            ):
                self.problems.append(
                    BadFile("?", f"{path}: image entry {str(entry)[:80]} has no id or file_name: left out")
                )
                continue
            size = [entry.get("width"), entry.get("height")]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                self.problems.append(
                    BadFile(
                        Path(entry["file_name"]).stem,
                        f"{path}: image {entry['file_name']} has width, height {size}, not two whole numbers > 0 "
                        "(its masks are decoded at that size): left out",
                    )
                )
                continue
            images[entry["id"]] = entry
        kept: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        for ann in data["annotations"]:
            where = f"{path}: annotation {ann.get('id', '?') if isinstance(ann, dict) else ann!r}"
            if not isinstance(ann, dict):
                self.problems.append(BadFile("?", f"{where} is not an object: left out"))
                continue
            if not isinstance(ann.get("image_id"), int | str) or ann["image_id"] not in images:
                self.problems.append(
                    BadFile("?", f"{where} has image_id {ann.get('image_id')!r}, which no image has: left out")
                )
                continue
            image = images[ann["image_id"]]
            problem = self._setting_problem(ann, names, path=path)
            if problem:
                self.problems.append(BadFile("?", f"{where} ({image['file_name']}): {problem}: left out"))
                continue
            category = names.get(ann.get("category_id"), str(ann.get("category_id")))
            if self.categories and category not in self.categories:
                self.stats["annotations_other_category"] += 1
                continue
            if ann.get("iscrowd"):
                self.stats["crowd_annotations"] += 1  # a crowd region is never one instance to prompt
                continue
            problem = annotation_problem(
                ann, width=image["width"], height=image["height"], needs_bbox=self.box_source == "annotation"
            )
            if problem:
                self.problems.append(BadFile("?", f"{where} ({image['file_name']}): {problem}: left out"))
                continue
            kept[ann["image_id"]].append(
                {
                    "segmentation": ann["segmentation"],
                    "bbox": ann.get("bbox"),
                    "id": ann.get("id"),
                    "category": category,
                }
            )
        records = []
        for image_id, entry in images.items():
            file = self.images / entry["file_name"]
            size = (entry["width"], entry["height"])
            records.append(
                CocoRecord(
                    key=Path(entry["file_name"]).stem,
                    path=file,
                    size=size,
                    annotations=tuple(kept[image_id]),
                    json=path,
                    split=split,
                )
            )
        return records

    def _setting_problem(self, ann: dict[str, Any], names: dict[Any, str], *, path: Path) -> str | None:
        """Why a field that a setting reads cannot be read: ``category_id`` (``data.categories``: which to keep),
        ``iscrowd`` (a crowd region is never an instance), or ``None``. ``bbox`` (``data.box_source``) and the
        segmentation: ``annotation_problem``."""
        if self.categories:
            if "category_id" not in ann:
                return "no category_id, which data.categories reads"
            if not isinstance(ann["category_id"], int | str) or ann["category_id"] not in names:
                return f"category_id {ann['category_id']!r}, which no category of {path.name} has (data.categories)"
        if ann.get("iscrowd") not in (None, 0, 1):  # True / False compare equal to 1 / 0
            return f"iscrowd {ann['iscrowd']!r}, which is neither 0 nor 1"
        return None

    def stray(self, records: list[CocoRecord]) -> list[str]:
        used = {r.path.resolve() for r in records}
        return [
            f"{p}: {'not in the annotations' if p.suffix.lower() in IMAGE_SUFFIXES else 'not an image'}"
            for p in sorted(self.images.rglob("*"))
            if p.is_file() and p.resolve() not in used
        ]

    def check(
        self, records: list[CocoRecord], *, on_bad_file: str, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[list[CocoRecord], list[BadFile]]:
        bad = list(self.problems)
        good = []
        for record in records:
            problem = image_problem(record.path, expected=record.size, what=f"{record.json}", max_pixels=max_pixels)
            if problem:
                bad.append(BadFile(record.key, problem))
            else:
                good.append(record)
        report_problems(bad, on_bad_file=on_bad_file)
        self.stats["exif_oriented_images"] = warn_orientation(r.path for r in good)
        return good, bad

    def masks(self, record: CocoRecord) -> np.ndarray:
        """(N, H, W) bool: each usable annotation's mask, decoded at the JSON's size."""
        width, height = record.size
        if not record.annotations:
            return np.zeros((0, height, width), bool)
        return np.stack([decode(a["segmentation"], height=height, width=width) for a in record.annotations])

    def depends_on(self, record: CocoRecord) -> tuple[list[Path], dict[str, Any]]:
        settings = {"source": "coco", "box_source": self.box_source, "min_area": self.min_area}
        return [record.path], {**settings, "size": record.size, "annotations": record.annotations}

    def census(self, record: CocoRecord) -> InstanceCensus:
        areas = [int(m.sum()) for m in self.masks(record)]
        empty = [a for a, n in zip(record.annotations, areas, strict=True) if not n]
        self.empty += [f"annotation {a['id']} of {record.path.name}" for a in empty]
        return instance_census(areas, min_area=self.min_area, categories=[a["category"] for a in record.annotations])

    def read(self, record: CocoRecord) -> InstanceSample:
        boxes = None
        if self.box_source == "annotation":
            width, height = record.size
            xywh = np.array([a["bbox"] for a in record.annotations], np.float32).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
        return instance_sample(
            record.key, read_rgb(record.path), self.masks(record), min_area=self.min_area, boxes=boxes
        )

    def warn(self, census: Iterable[InstanceCensus]) -> None:
        if self.empty:
            shown = ", ".join(self.empty[:3]) + (", ..." if len(self.empty) > 3 else "")
            log.warning("%d annotations have an empty mask (their segmentation covers no pixel): %s left out",
                        len(self.empty), shown)  # fmt: skip

    def counts(self, census: Iterable[InstanceCensus]) -> dict[str, Any]:
        """The census after filtering: instances per category that are trained on and scored (they add up to the
        instances used), what the census left out per category beside it, and the annotations that were never
        instances (crowd, other categories; bad ones are in ``bad_files``)."""
        used, left_out = category_counts(census)
        return {
            "source": "coco",
            "instances_per_category": used,
            "instances_left_out_per_category": left_out,
            "crowd_annotations": self.stats["crowd_annotations"],
            "annotations_other_category": self.stats["annotations_other_category"],
            "box_source": self.box_source,
            "exif_oriented_images": self.stats["exif_oriented_images"],
        }

    def user_splits(self) -> dict[str, set[str]] | None:
        if None in self.annotations:
            return None
        return {split: {r.key for r in self.find() if r.split == split} for split in ("train", "val", "test")}

    def no_instance_hint(self) -> str:
        return f"check {', '.join(map(str, self.annotations.values()))} (segmentations, iscrowd, data.categories)"


def load_coco_json(path: Path) -> dict[str, Any]:
    """A COCO instance file's content; one-line ``SamlitError`` if it is missing, not JSON or not COCO."""
    if not path.is_file():
        raise SamlitError(f"data.annotations={path} does not exist: pass a COCO instance JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SamlitError(f"data.annotations={path} is not valid JSON ({error}); export it again") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise SamlitError(
            f"data.annotations={path} is not a COCO instance file: it needs 'images' and 'annotations' lists"
        )
    return data


def annotation_problem(ann: dict[str, Any], *, width: int, height: int, needs_bbox: bool = False) -> str | None:
    """Why an annotation cannot be one instance (no segmentation, a polygon under 3 points, a malformed RLE; a
    ``bbox`` that is not four numbers, has no area or lies outside the ``width`` x ``height`` image; no ``bbox``
    when ``needs_bbox``: ``data.box_source=annotation`` reads it), or ``None``."""
    segmentation = ann.get("segmentation")
    if not segmentation:
        return "no segmentation (an empty mask)"
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and all(isinstance(v, int | float) for v in p) for p in segmentation):
            return "a polygon that is not a list of numbers"
        short = [p for p in segmentation if len(p) < 6]
        if short:
            return f"a polygon with fewer than 3 points ({len(short[0]) // 2})"
    elif not (isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation):
        return "a segmentation that is neither polygons nor RLE"
    else:
        size, counts = segmentation["size"], segmentation["counts"]
        if not (isinstance(size, list) and len(size) == 2 and all(_whole(v) for v in size)):
            return f"an RLE whose size {size!r} is not [height, width]"
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(_whole(v) for v in counts))):
            return "an RLE whose counts are neither run lengths nor a compressed string"
        if isinstance(counts, list) and sum(counts) != size[0] * size[1]:
            return "an uncompressed RLE whose counts do not add up to its size"
        runs = rle_runs(counts) if isinstance(counts, str) else counts
        if isinstance(counts, str) and (runs is None or min(runs, default=0) < 0 or sum(runs) != size[0] * size[1]):
            return "a compressed RLE whose counts do not decode to its size (pycocotools would read garbage)"
        if [height, width] != size:
            return f"an RLE of size {size} for a {width}x{height} image"
    bbox = ann.get("bbox")
    if bbox is None:
        return "no bbox, which data.box_source=annotation reads (or pass data.box_source=mask)" if needs_bbox else None
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
        return f"bbox {bbox!r} is not [x, y, width, height] (four numbers)"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return f"bbox {bbox} has no area (width and height must be > 0)"
    tol = BBOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"bbox {bbox} outside the {width}x{height} image"
    return None


def rle_runs(counts: str) -> list[int] | None:
    """The run lengths of a compressed RLE's ``counts`` string (pycocotools' ``rleFrString``: 5 bits a character,
    each run after the second stored as the difference to the run two before), ``None`` when it is cut off."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position == len(counts):
                return None
            char = ord(counts[position]) - 48
            value |= (char & 0x1F) << shift
            more, position, shift = bool(char & 0x20), position + 1, shift + 5
            if not more and char & 0x10:
                value |= -1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
    return runs


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def decode(segmentation: list | dict, *, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of polygons, uncompressed RLE or compressed RLE (``pycocotools``)."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, merged
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return coco_mask.decode(rle).astype(bool)

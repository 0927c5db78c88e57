"""What a user gives ``predict.py`` as prompts, read and checked before the model is built.

A prompt is what stock ``SamPredictor.predict(point_coords, point_labels, box, mask_input, multimask_output=False)``
takes for one instance: a box, clicks (points + their labels), or both (``Prompt``), and optionally an earlier
prediction as SAM's mask prompt (``mask_input``). The frames and units:

    box          [x0,y0,x1,y1] in the image's pixels; reaching outside it: clipped with a warning
    points       [x, y] in the image's pixels, inside the image
    labels       one per point: 1 on the stamp (positive), 0 off it (negative)
    mask_input   (N, 256, 256) float32 low-res logits, row i instance i, in the frame that made them: the whole
                 image, or with data.crop=box instance i's crop (fixed by its box and the margin)

The formats accepted:

    box=[x0,y0,x1,y1]  box=[[x0,y0,x1,y1],[...]]  box="x0,y0,x1,y1"         image=<file>
    points=[[x,y],...] labels=[1,0,...]     one box (or none): that instance's clicks; [x,y] + 1: one click
    points=[[[x,y]],[]] labels=[[1],[]]     several boxes: a list per box, in the boxes' order ([]: no clicks);
                                            without box=: points alone, one instance per list (whole-image
                                            frame only: data.crop=box crops around a box)
    boxes=<JSON>   {"scan.png": [[x0,y0,x1,y1], {"box": [...], "points": [[x,y], ...], "labels": [1, ...]}, ...]}
                   image=<folder>: an instance is a box or an object (box or points left out at will, not both)
    mask_input=<stem>_low_res_logits.npy    as predict.py writes it (SamPredictor's (N, 1, 256, 256) is read too),
                                            or the folder (an earlier output=) holding one per image

The error rule: a bad prompt (a malformed box or one with no area in the image, a click outside it, a label other
than 1 / 0, counts that differ, clicks not per box beside several boxes, a logits file of another shape or not a
``.npy``) is a ``SamlitError`` of one line naming the key, or the JSON file, image and instance, and the fix,
raised before the model is built. ``as_prompts``, the array form ``predict_masks`` takes, raises ``ValueError``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from samlit.core.errors import SamlitError
from samlit.core.images import read_rgb
from samlit.data.frame import LOW_RES
from samlit.data.prompts import clip_boxes

log = logging.getLogger(__name__)
LOW_RES_SUFFIX = "_low_res_logits.npy"  # <stem>_low_res_logits.npy: an image's logits, a later mask_input=
INSTANCE_KEYS = ("box", "points", "labels")  # an instance object of the boxes= JSON
BOX_FORM = "boxes are [x0, y0, x1, y1], two corners in pixels, not [x, y, width, height]"
INSTANCE_FORM = '{"box": [x0,y0,x1,y1], "points": [[x,y], ...], "labels": [1, 0, ...]}'


@dataclass(frozen=True)
class Prompt:
    """One instance's prompts in its image's pixels: what ``SamPredictor.predict`` takes for it.

    Attributes:
        box: (4,) float32 xyxy, or None (the points alone).
        points: (P, 2) float32 xy, P >= 0 (at least one without a box).
        labels: (P,) int64, 1 positive (on the stamp) / 0 negative.
    """

    box: np.ndarray | None
    points: np.ndarray
    labels: np.ndarray


def as_prompts(boxes: Any, points: Any = None, labels: Any = None) -> list[Prompt]:
    """Arrays as ``predict_masks`` takes them -> one ``Prompt`` per instance.

    Args:
        boxes: (N, 4) xyxy, or None (every instance by its points alone), or a sequence of N (4,) boxes / None.
        points: None, (N, P, 2) xy, or a sequence of N (P_i, 2) arrays (P_i may differ, and be 0 beside a box).
        labels: like ``points``: (N, P) or N (P_i,) arrays of 1 / 0.

    Raises:
        ValueError: counts or shapes that do not fit, labels other than 0 / 1, an instance with no prompt.
    """
    if boxes is not None and not (isinstance(boxes, list | tuple) and any(box is None for box in boxes)):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)  # one box (4,) is one instance
    if points is None and labels is None:
        if boxes is None:
            raise ValueError("no prompt: give boxes, or points and labels")
        points = labels = [None] * len(boxes)
    if points is None or labels is None or len(points) != len(labels):
        raise ValueError("points and labels go together: one (P_i, 2) and one (P_i,) array per instance")
    boxes = [None] * len(points) if boxes is None else boxes
    if len(boxes) != len(points):
        raise ValueError(f"{len(boxes)} boxes but points for {len(points)} instances")
    prompts = []
    for i, (box, coords, tags) in enumerate(zip(boxes, points, labels, strict=True)):
        coords = np.zeros((0, 2), np.float32) if coords is None else np.asarray(coords, np.float32).reshape(-1, 2)
        tags = np.zeros(0, np.int64) if tags is None else np.asarray(tags).reshape(-1)
        if len(coords) != len(tags) or not np.isin(tags, (0, 1)).all():
            raise ValueError(f"instance {i}: {len(coords)} points need as many labels, each 1 or 0, got {tags}")
        if box is None and not len(coords):
            raise ValueError(f"instance {i}: no box and no points")
        box = None if box is None else np.asarray(box, np.float32).reshape(4)
        prompts.append(Prompt(box=box, points=coords, labels=tags.astype(np.int64)))
    return prompts


def checked_boxes(boxes: Any, *, image_size: tuple[int, int], source: str) -> np.ndarray:
    """(N, 4) float boxes inside the image: boxes reaching outside are clipped with a warning; a box with no
    area inside the image, a box that is not four finite numbers (``"x0,y0,x1,y1"`` text is read too), a box whose
    x1 <= x0 or y1 <= y0 (e.g. an [x, y, width, height] box: the message gives its corners) is a SamlitError."""
    usage = f"{source}: a box is [x0,y0,x1,y1] (four finite numbers, pixels) or a list of them, got {boxes!r}"
    if isinstance(boxes, str):
        boxes = boxes.strip().strip("[]").split(",")
    try:
        array = np.asarray(boxes, dtype=np.float32)
    except (TypeError, ValueError):
        raise SamlitError(usage) from None
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0 or not np.isfinite(array).all():
        raise SamlitError(usage)
    for box in array:
        reversed_side = reversed_corners(box)
        if reversed_side:
            raise SamlitError(f"{source}: box {box.tolist()} has {reversed_side}: {BOX_FORM}{xywh_hint(box)}")
    height, width = image_size
    clipped = clip_boxes(array, image_size=image_size)
    for before, after in zip(array, clipped, strict=True):
        if after[2] <= after[0] or after[3] <= after[1]:
            raise SamlitError(f"{source}: box {before.tolist()} has no area inside the {width}x{height} image")
        if not np.array_equal(before, after):
            log.warning("%s: box %s reaches outside the image; clipped to %s", source, before.tolist(), after.tolist())
    return clipped


def reversed_corners(box: np.ndarray) -> str | None:
    """``"x1 (111) < x0 (300)"`` when a box's second corner is not below and right of its first, else ``None``."""
    for axis, low, high in (("x", box[0], box[2]), ("y", box[1], box[3])):
        if high <= low:
            return f"{axis}1 ({high:g}) {'<' if high < low else '='} {axis}0 ({low:g})"
    return None


def xywh_hint(box: np.ndarray) -> str:
    """``"; if it is [x, y, width, height], pass [300, 40, 411, 111]"``: the corners of the box a COCO-style
    [x, y, w, h] means (``""`` when it cannot be one)."""
    x, y, w, h = box.tolist()
    if w <= 0 or h <= 0:
        return ""
    return f"; if it is [x, y, width, height], pass [{x:g}, {y:g}, {x + w:g}, {y + h:g}]"


def checked_clicks(
    points: Any, labels: Any, *, image_size: tuple[int, int], source: str, keys: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """One instance's clicks: (P, 2) float32 xy inside the image and (P,) int64 labels 1 / 0 (both empty when
    neither is given). ``keys`` name the two settings in messages (``points=`` / ``"points"``).

    Raises:
        SamlitError: one line naming ``source`` and the key: points without labels or the reverse, a point that is
            not two finite numbers or lies outside the image, a label other than 1 / 0, counts that differ.
    """
    points_key, labels_key = keys
    if points is None and labels is None:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    if labels is None:
        raise SamlitError(
            f"{source}: {points_key} needs {labels_key}: one label per point, 1 (on the stamp) or 0 (off it), "
            "e.g. [1, 0]"
        )
    if points is None:
        raise SamlitError(f"{source}: {labels_key} without {points_key}: give the points [[x,y], ...] they label")
    try:
        coords = np.asarray(points, dtype=np.float32)
        tags = np.asarray(labels, dtype=np.float32)
    except (TypeError, ValueError):
        coords = tags = np.full(1, np.nan, np.float32)  # reported below, naming what is wrong
    coords = coords.reshape(0, 2) if coords.size == 0 else coords
    coords = coords[None] if coords.shape == (2,) else coords  # one point, [x,y] (labels 1 or [1])
    tags = tags.reshape(1) if tags.ndim == 0 else tags
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
        raise SamlitError(
            f"{source}: {points_key} is a list of points [[x,y], ...] (two finite numbers each, pixels), got {points!r}"
        )
    if tags.ndim != 1 or not np.isin(tags, (0, 1)).all():
        raise SamlitError(
            f"{source}: {labels_key} is a list of labels, 1 (positive: on the stamp) or 0 (negative), got {labels!r}"
        )
    if len(coords) != len(tags):
        raise SamlitError(
            f"{source}: {len(coords)} point(s) in {points_key} but {len(tags)} label(s) in {labels_key}: give one "
            "label per point (1 positive, 0 negative)"
        )
    height, width = image_size
    outside = (coords[:, 0] < 0) | (coords[:, 0] > width) | (coords[:, 1] < 0) | (coords[:, 1] > height)
    if outside.any():
        raise SamlitError(
            f"{source}: point {coords[outside][0].tolist()} lies outside the {width}x{height} image (points are "
            "[x,y] in its pixels)"
        )
    return coords, tags.astype(np.int64)


class Given(NamedTuple):
    """``box=``, ``points=``, ``labels=`` as given for ``image=<file>`` (plain values, None when not given)."""

    box: Any
    points: Any
    labels: Any

    @classmethod
    def of(cls, cfg: DictConfig) -> Given:
        """``cfg.box``, ``cfg.points``, ``cfg.labels`` as plain values (``_plain``)."""
        return cls(box=_plain(cfg.box), points=_plain(cfg.get("points")), labels=_plain(cfg.get("labels")))


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists, numbers); JSON text (a quoted list) read as JSON."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _per_instance(points: Any) -> bool:
    """Whether ``points`` is a list of point lists (one per instance) rather than one instance's ``[[x,y], ...]``."""
    return isinstance(points, list) and any(
        isinstance(item, list) and (not item or any(isinstance(v, list) for v in item)) for item in points
    )


def given_prompts(given: Given, *, image_size: tuple[int, int], source: str) -> list[Prompt]:
    """The prompts of ``box=`` / ``points=`` / ``labels=``: with one box or none, ``points`` is one instance's
    list; with several boxes (or for several point-only instances) a list per instance."""
    boxes = [] if given.box is None else list(checked_boxes(given.box, image_size=image_size, source=source))
    points, labels = given.points, given.labels
    if points is None and labels is None:
        return [Prompt(box=b, points=np.zeros((0, 2), np.float32), labels=np.zeros(0, np.int64)) for b in boxes]
    if isinstance(points, list) and _per_instance(points):
        if not isinstance(labels, list) or len(labels) != len(points) or not all(isinstance(t, list) for t in labels):
            raise SamlitError(
                f"{source}: points= holds {len(points)} lists (one per instance), so labels= needs as many: "
                "labels=[[1,...],[0,...]]"
            )
        if boxes and len(points) != len(boxes):
            raise SamlitError(
                f"{source}: points= holds {len(points)} lists for {len(boxes)} boxes: give one list per box, in the "
                "boxes' order ([] for a box without clicks)"
            )
    elif len(boxes) > 1:
        raise SamlitError(
            f"{source}: with {len(boxes)} boxes, points= and labels= go per box: points=[[[x,y],...],[[x,y],...]] "
            "labels=[[1,...],[0,...]] ([] for a box without clicks)"
        )
    else:
        points, labels = [points], [labels]
    boxes = boxes or [None] * len(points)
    prompts = []
    for i, (box, coords, tags) in enumerate(zip(boxes, points, labels, strict=True)):
        where = source if len(points) == 1 else f"{source} instance {i}"
        coords, tags = checked_clicks(coords, tags, image_size=image_size, source=where, keys=("points=", "labels="))
        if box is None and not len(coords):
            raise SamlitError(f"{where}: no box and no points: give points=[[x,y],...] labels=[1,...], or a box=")
        prompts.append(Prompt(box=box, points=coords, labels=tags))
    return prompts


def table_prompts(raw: Any, *, image_size: tuple[int, int], source: str) -> list[Prompt]:
    """The prompts of one image in the ``boxes=`` JSON: a list whose items are boxes ``[x0,y0,x1,y1]`` or instance
    objects (``INSTANCE_FORM``, ``box`` or ``points`` left out at will, not both); one box or one object alone is
    read too."""
    entries = raw
    if isinstance(raw, dict | str) or (isinstance(raw, list) and raw and not isinstance(raw[0], list | dict | str)):
        entries = [raw]
    if not isinstance(entries, list) or not entries:
        raise SamlitError(f"{source}: give a list of instances, each [x0,y0,x1,y1] or {INSTANCE_FORM}; got {raw!r}")
    prompts = []
    for i, entry in enumerate(entries):
        where = f"{source} instance {i}"
        box, points, labels = (
            (entry.get(key) for key in INSTANCE_KEYS) if isinstance(entry, dict) else (entry, None, None)
        )
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - set(INSTANCE_KEYS))
            if unknown:
                raise SamlitError(f"{where}: unknown key {unknown[0]!r}; an instance is {INSTANCE_FORM}")
            if box is None and points is None:
                raise SamlitError(f"{where}: no box and no points; an instance is {INSTANCE_FORM}")
        if box is not None:
            boxes = checked_boxes(box, image_size=image_size, source=where)
            if len(boxes) != 1:
                raise SamlitError(f"{where}: one box per instance, [x0,y0,x1,y1], got {box!r}")
            box = boxes[0]
        coords, tags = checked_clicks(
            points, labels, image_size=image_size, source=where, keys=('"points"', '"labels"')
        )
        prompts.append(Prompt(box=box, points=coords, labels=tags))
    return prompts


def checked_prompts(path: Path, raw: Any, *, boxes_file: Any) -> list[Prompt]:
    """The prompts of one job of ``jobs``, checked against its image's size (``SamlitError`` naming the key)."""
    size = read_rgb(path).shape[:2]
    if isinstance(raw, Given):
        return given_prompts(raw, image_size=size, source=str(path))
    return table_prompts(raw, image_size=size, source=f'boxes={boxes_file} "{path.name}"')


def read_mask_input(path: Path, *, count: int) -> np.ndarray:
    """(count, 256, 256) float32 low-res logits from a ``.npy`` file (SamPredictor's (count, 1, 256, 256) is read
    too). SamlitError naming the file and the expected shape when it is not that."""
    expected = (
        f"({count}, {LOW_RES}, {LOW_RES}) float logits, one row per instance (the <stem>{LOW_RES_SUFFIX} "
        "predict.py writes)"
    )
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        array = None
    if not isinstance(array, np.ndarray):
        raise SamlitError(f"mask_input={path}: not a NumPy .npy file; expected {expected}")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.shape != (count, LOW_RES, LOW_RES):
        raise SamlitError(f"mask_input={path}: shape {array.shape}, expected {expected}")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise SamlitError(
            f"mask_input={path}: {array.dtype} values{'' if np.isfinite(array).all() else ' (not all finite)'}, "
            f"expected {expected}: logits, not a 0/1 mask"
        )
    return array.astype(np.float32)


def mask_inputs(given: Any, todo: list[tuple[Path, list[Prompt]]]) -> list[np.ndarray | None]:
    """Per job its mask prompt (``read_mask_input``) from ``mask_input=``: a ``.npy`` file (one image) or a folder
    holding ``<stem>_low_res_logits.npy`` for every image; None when not given."""
    if given is None:
        return [None] * len(todo)
    path = Path(str(given)).expanduser()
    if path.is_dir():
        files = [path / f"{image.stem}{LOW_RES_SUFFIX}" for image, _ in todo]
        for (image, _), file in zip(todo, files, strict=True):
            if not file.is_file():
                raise SamlitError(
                    f"mask_input={path} holds no {file.name} for {image}: a mask-input folder holds "
                    f"<stem>{LOW_RES_SUFFIX} per image (an earlier predict.py output=)"
                )
    elif path.is_file():
        if len(todo) != 1:
            raise SamlitError(
                f"mask_input={path} is one image's logits, for {len(todo)} images: pass the folder holding "
                f"<stem>{LOW_RES_SUFFIX} per image (an earlier predict.py output=)"
            )
        files = [path]
    else:
        raise SamlitError(f"mask_input={path}: no such file or folder")
    return [read_mask_input(file, count=len(prompts)) for file, (_, prompts) in zip(files, todo, strict=True)]

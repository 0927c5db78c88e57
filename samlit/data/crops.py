"""Box-crop frame (``data.crop=box``): each stamp is seen through a crop around its box instead of the whole page.

SAM's decoder predicts 256 x 256 logits over its whole 1024 input. Through the page of a 200-dpi scan one logit
cell is ~9 px while stamp strokes are 2-5 px, which caps any decoder near IoU 0.5; a crop of the box plus a
margin, resized into the same 1024 frame, gives each cell ~1-2 px of the page (``samlit.data.ceiling``
measures both ceilings). A crop goes through exactly what a whole image would (``to_sam_frame``), so stock
``SamPredictor`` run on the crop gives the same mask.

The crop of a box ``[x0, y0, x1, y1]`` (w = x1 - x0, h = y1 - y0) with margin m is
``[floor(x0 - m*w), floor(y0 - m*h), ceil(x1 + m*w), ceil(y1 + m*h)]`` clipped to the image.
"""

from __future__ import annotations

import math

import numpy as np

from samlit.core.errors import SamlitError
from samlit.data.sample import StampSample

MODES = ("none", "box")
CropBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels


def check_crop(crop: str, margin: float) -> None:
    """One line naming the key for a bad ``data.crop`` / ``data.crop_margin``."""
    if crop not in MODES:
        raise SamlitError(f"data.crop={crop!r} must be one of {', '.join(MODES)}")
    if not (isinstance(margin, int | float) and 0 <= margin <= 4):
        raise SamlitError(f"data.crop_margin={margin!r} must be a fraction of the box side in [0, 4] (e.g. 0.1)")


def crop_box(box: np.ndarray, *, margin: float, image_size: tuple[int, int]) -> CropBox:
    """The crop around ``box`` (4,) xyxy pixels: the box grown by ``margin`` of its width/height on each side,
    floor/ceil to integers, clipped to ``image_size`` (H, W)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = x1 - x0, y1 - y0
    image_h, image_w = image_size
    return (
        max(0, math.floor(x0 - margin * width)),
        max(0, math.floor(y0 - margin * height)),
        min(image_w, math.ceil(x1 + margin * width)),
        min(image_h, math.ceil(y1 + margin * height)),
    )


def crop_stamp(sample: StampSample, index: int, *, margin: float) -> tuple[StampSample, CropBox]:
    """Stamp ``index`` of ``sample`` seen through its crop: image (h, w, 3), its mask (1, h, w), its box (1, 4) in
    crop pixels; key ``<scan key>-s<index>``. Returns the crop sample and where the crop sits on the page."""
    window = crop_box(sample.boxes[index], margin=margin, image_size=sample.image.shape[:2])
    x0, y0, x1, y1 = window
    box = sample.boxes[index : index + 1] - np.array([x0, y0, x0, y0], dtype=np.float32)
    cropped = StampSample(
        key=f"{sample.key}-s{index}",
        image=np.ascontiguousarray(sample.image[y0:y1, x0:x1]),
        masks=np.ascontiguousarray(sample.masks[index : index + 1, y0:y1, x0:x1]),
        boxes=box.astype(np.float32),
    )
    return cropped, window


def paste(masks: np.ndarray, window: CropBox, *, image_size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) masks of a crop -> (N, H, W) on the page (zero outside the crop)."""
    x0, y0, x1, y1 = window
    page = np.zeros((len(masks), *image_size), dtype=masks.dtype)
    page[:, y0:y1, x0:x1] = masks
    return page

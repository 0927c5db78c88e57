"""SAM's frame of an item: the page, or one instance seen through a crop around its box (``data.crop=box``), resized
exactly as ``SamPredictor.set_image`` resizes an image, with its boxes, masks and targets in the same frame.

Crops. SAM's decoder predicts 256 x 256 logits over its whole 1024 input. Through the page of a 200-dpi scan one
logit cell is ~9 px while stamp strokes are 2-5 px, which caps any decoder near IoU 0.5; a crop of the box plus a
margin, resized into the same 1024 frame, gives each cell ~1-2 px of the page (``samlit.run.ceiling`` measures
both ceilings). A crop goes through exactly what a whole image would (``to_sam_frame``), so stock ``SamPredictor``
run on the crop gives the same mask. The crop of a box ``[x0, y0, x1, y1]`` (w = x1 - x0, h = y1 - y0) with
margin m is ``[floor(x0 - m*w), floor(y0 - m*h), ceil(x1 + m*w), ceil(y1 + m*h)]`` clipped to the image.

Resize. The model later normalises and pads the resized image (``Sam.preprocess``); the decoder predicts logits
in a 256 x 256 frame that covers the padded 1024 x 1024 input, so the low-res targets are built in that frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from samlit.core.errors import SamlitError
from samlit.data.sample import InstanceSample

MODES = ("none", "box")
CropBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels
LOW_RES = 256  # side of the mask decoder's output frame


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


def crop_stamp(sample: InstanceSample, index: int, *, margin: float) -> tuple[InstanceSample, CropBox]:
    """Stamp ``index`` of ``sample`` seen through its crop: image (h, w, 3), its mask (1, h, w), its box (1, 4) in
    crop pixels; key ``<scan key>-s<index>``. Returns the crop sample and where the crop sits on the page."""
    window = crop_box(sample.boxes[index], margin=margin, image_size=sample.image.shape[:2])
    x0, y0, x1, y1 = window
    box = sample.boxes[index : index + 1] - np.array([x0, y0, x0, y0], dtype=np.float32)
    cropped = InstanceSample(
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


def to_sam_frame(
    sample: InstanceSample,
    *,
    boxes: np.ndarray,
    points: tuple[np.ndarray, np.ndarray] | None = None,
    target_length: int = 1024,
) -> dict[str, Any]:
    """Resize one sample into SAM's frame: ``frame_targets`` (what the prompts do not change) plus
    ``frame_prompts``.

    Args:
        sample: image (H, W, 3) uint8, masks (N, H, W) bool.
        boxes: (N, 4) xyxy prompts in original pixels (the GT boxes, possibly jittered).
        points: optional point prompts, coords (N, P, 2) xy in original pixels and labels (N, P) (see
            ``samlit.data.prompts.sample_points``); returned as ``point_coords`` (resized frame) and ``point_labels``.
        target_length: SAM's input long side (1024 for every SAM).

    Returns:
        dict with ``key``; ``image`` (3, h, w) uint8 with max(h, w) = target_length; ``boxes`` (N, 4) float32
        in the resized frame and ``pixel_boxes`` (N, 4) float32 the same prompts in original pixels (figures);
        ``masks`` (N, H, W) bool at original resolution (metrics, full-res loss); ``low_res_targets`` (N, 256,
        256) float32 soft targets in the decoder frame (the decoder's *logits* in that frame are
        ``low_res_logits``); ``original_size`` (H, W) and ``input_size`` (h, w) as tuples of ints.
    """
    frame = frame_targets(sample, target_length=target_length)
    prompts = frame_prompts(boxes, points, original_size=frame["original_size"], target_length=target_length)
    return {**frame, **prompts}


def frame_image(image: np.ndarray, *, target_length: int = 1024) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) uint8 with max(h, w) = ``target_length`` (``SamPredictor.set_image``'s
    resize): the pixels the image encoder sees, and what an entry's ``image_digest`` names."""
    resized = ResizeLongestSide(target_length).apply_image(image)
    return torch.from_numpy(resized).permute(2, 0, 1).contiguous()


def frame_targets(sample: InstanceSample, *, target_length: int = 1024) -> dict[str, Any]:
    """What of ``to_sam_frame`` does not depend on the prompts: ``key``, ``image``, ``masks``,
    ``low_res_targets``, ``original_size``, ``input_size`` (see there)."""
    original_size = (int(sample.image.shape[0]), int(sample.image.shape[1]))
    image = frame_image(sample.image, target_length=target_length)
    input_size = (int(image.shape[1]), int(image.shape[2]))
    masks = torch.from_numpy(np.ascontiguousarray(sample.masks))
    return {
        "key": sample.key,
        "image": image,
        "masks": masks,
        "low_res_targets": low_res_targets(masks, input_size=input_size, target_length=target_length),
        "original_size": original_size,
        "input_size": input_size,
    }


def frame_prompts(
    boxes: np.ndarray,
    points: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    original_size: tuple[int, int],
    target_length: int = 1024,
) -> dict[str, torch.Tensor]:
    """Prompts in original pixels -> ``boxes`` (N, 4) in the resized frame, ``pixel_boxes`` (N, 4) as given, and
    with ``points`` (coords (N, P, 2), labels (N, P)) ``point_coords`` (resized) and ``point_labels``."""
    resize = ResizeLongestSide(target_length)
    out = {
        "boxes": torch.from_numpy(resize.apply_boxes(boxes, original_size).astype(np.float32)),
        "pixel_boxes": torch.from_numpy(np.asarray(boxes, dtype=np.float32)),
    }
    if points is not None:
        coords, labels = points
        resized = resize.apply_coords(coords.reshape(-1, 2), original_size).reshape(coords.shape)
        out["point_coords"] = torch.from_numpy(resized.astype(np.float32))
        out["point_labels"] = torch.from_numpy(labels)
    return out


def low_res_targets(masks: torch.Tensor, *, input_size: tuple[int, int], target_length: int) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, 256, 256) float coverage in the decoder's frame (resize, pad, area-pool)."""
    if masks.shape[0] == 0:
        return torch.zeros(0, LOW_RES, LOW_RES)
    resized = F.interpolate(masks[:, None].float(), size=input_size, mode="bilinear", align_corners=False)
    padded = F.pad(resized, (0, target_length - input_size[1], 0, target_length - input_size[0]))
    return F.interpolate(padded, size=(LOW_RES, LOW_RES), mode="area")[:, 0].clamp(0, 1)

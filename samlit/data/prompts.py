"""Box prompts: the GT boxes come from the region maps (reader); training jitters them so the decoder does
not learn that a prompt always touches the stamp's edge."""

from __future__ import annotations

import numpy as np
import torch


def jitter_boxes(boxes: np.ndarray, *, fraction: float, image_size: tuple[int, int]) -> np.ndarray:
    """Move every edge of every box by ``U(-fraction, fraction)`` times the box's width/height.

    Args:
        boxes: (N, 4) float xyxy in pixels.
        fraction: maximal shift as a fraction of the box side; 0 returns the boxes unchanged.
        image_size: (H, W); jittered boxes are clipped to the image and keep at least 1 px per side.

    Returns:
        (N, 4) float32 xyxy. Randomness comes from torch's global RNG, which Lightning seeds per worker.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    if fraction <= 0 or len(boxes) == 0:
        return boxes.copy()
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    noise = (torch.rand(boxes.shape).numpy() * 2 - 1) * fraction
    out = boxes + noise * sides
    height, width = image_size
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    out[:, 2] = np.maximum(out[:, 2], np.minimum(out[:, 0] + 1, width))
    out[:, 3] = np.maximum(out[:, 3], np.minimum(out[:, 1] + 1, height))
    out[:, 0] = np.minimum(out[:, 0], out[:, 2] - 1)
    out[:, 1] = np.minimum(out[:, 1], out[:, 3] - 1)
    return out.astype(np.float32)

"""Box prompts: the GT boxes come from the region maps (reader); training jitters them so the decoder does
not learn that a prompt always touches the stamp's edge."""

from __future__ import annotations

import numpy as np
import torch


def jitter_boxes(
    boxes: np.ndarray, *, fraction: float, image_size: tuple[int, int], generator: torch.Generator | None = None
) -> np.ndarray:
    """Move every edge of every box by ``U(-fraction, fraction)`` times the box's width/height.

    Args:
        boxes: (N, 4) float xyxy in pixels.
        fraction: maximal shift as a fraction of the box side; 0 returns the boxes unchanged.
        image_size: (H, W); jittered boxes are clipped to the image and keep at least 1 px per side.
        generator: where the randomness comes from (default: torch's global RNG).

    Returns:
        (N, 4) float32 xyxy.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    if fraction <= 0 or len(boxes) == 0:
        return boxes.copy()
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    noise = (torch.rand(boxes.shape, generator=generator).numpy() * 2 - 1) * fraction
    out = boxes + noise * sides
    height, width = image_size
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    out[:, 2] = np.maximum(out[:, 2], np.minimum(out[:, 0] + 1, width))
    out[:, 3] = np.maximum(out[:, 3], np.minimum(out[:, 1] + 1, height))
    out[:, 0] = np.minimum(out[:, 0], out[:, 2] - 1)
    out[:, 1] = np.minimum(out[:, 1], out[:, 3] - 1)
    return out.astype(np.float32)


def sample_points(
    masks: np.ndarray,
    boxes: np.ndarray,
    *,
    positive: int,
    negative: int,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random point prompts for each stamp: ``positive`` ink pixels and ``negative`` ink-free pixels inside its box
    (the gaps between strokes, which a box alone leaves ambiguous).

    Args:
        masks: (N, H, W) bool instance masks.
        boxes: (N, 4) xyxy prompts in pixels (the negatives are drawn inside them).
        positive, negative: points of each kind per stamp.

    Returns:
        coords (N, positive + negative, 2) float32 xy pixel centres; labels (N, positive + negative) int64 with
        1 = ink, 0 = background, -1 = no point (SAM's padding label; a stamp with fewer such pixels than asked).
        Randomness comes from ``generator`` (default: torch's global RNG).
    """
    count = positive + negative
    coords = np.zeros((len(masks), count, 2), dtype=np.float32)
    labels = np.full((len(masks), count), -1, dtype=np.int64)
    height, width = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    for i, (mask, box) in enumerate(zip(masks, boxes, strict=True)):
        x0, y0 = (int(np.clip(v, 0, s)) for v, s in zip(np.floor(box[:2]), (width, height), strict=True))
        x1, y1 = (int(np.clip(v, 0, s)) for v, s in zip(np.ceil(box[2:]), (width, height), strict=True))
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        start = 0
        for label, pixels, wanted in ((1, mask, positive), (0, inside & ~mask, negative)):
            ys, xs = np.nonzero(pixels)
            if wanted and len(xs):
                pick = torch.randint(len(xs), (wanted,), generator=generator).numpy()
                coords[i, start : start + wanted] = np.stack([xs[pick], ys[pick]], axis=1)
                labels[i, start : start + wanted] = label
            start += wanted
    return coords, labels

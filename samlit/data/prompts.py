"""Prompts: the GT boxes come from the readers; training jitters them (so the decoder does not learn that a
prompt always touches the stamp's edge) and may add point prompts. ``PromptSampler`` is the ``data.prompts``
config node; val and test use its default (the exact boxes, no points)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from samlit.core.errors import SamlitError

Points = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class PromptSampler:
    """Each training item's prompts.

    Args:
        box_jitter: each box edge moves up to this fraction of the box side (0 = exact boxes).
        positive_points, negative_points: point prompts drawn per stamp (ink / ink-free pixels inside its box),
            given with the box in a ``points_probability`` share of the items (the rest: the box alone).
    """

    box_jitter: float = 0.0
    positive_points: int = 0
    negative_points: int = 0
    points_probability: float = 0.5

    def __post_init__(self) -> None:
        whole = (lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0")
        rules = {  # key: (valid, what it must be)
            "box_jitter": (lambda v: 0 <= v < 1, "a fraction of the box side in [0, 1), e.g. 0.1"),
            "positive_points": whole,
            "negative_points": whole,
            "points_probability": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
        }
        for key, (valid, expected) in rules.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not valid(value):
                raise SamlitError(f"data.prompts.{key}={value!r} must be {expected}")

    def __call__(
        self, masks: np.ndarray, boxes: np.ndarray, *, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, Points | None]:
        """Prompts for one image: boxes (N, 4) float32 xyxy pixels and optional points (see ``sample_points``).

        ``masks`` (N, H, W) bool, or anything with that ``shape`` that ``np.asarray`` turns into it (``PackedMasks``:
        unpacked only when points are drawn); randomness from ``generator`` (default: torch's global RNG).
        """
        boxes = jitter_boxes(boxes, fraction=self.box_jitter, image_size=tuple(masks.shape[1:]), generator=generator)
        wants_points = self.positive_points + self.negative_points > 0
        if not wants_points or float(torch.rand((), generator=generator)) >= self.points_probability:
            return boxes, None
        points = sample_points(
            np.asarray(masks), boxes, positive=self.positive_points, negative=self.negative_points, generator=generator
        )
        return boxes, points


def clip_boxes(boxes: np.ndarray, *, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) xyxy boxes clipped to an image of ``image_size`` (H, W); a copy, float32."""
    height, width = image_size
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


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
    out = clip_boxes(boxes + noise * sides, image_size=image_size)
    height, width = image_size
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

"""The batch contract: what one group of a batch holds, defined once and imported by data, model and run.

A batch is a list of groups, one per item (an image, or one instance's crop in ``data.crop=box``): items differ in
size and instance count, so they are never stacked. The datasets (``samlit.data.dataset``) make groups, the module
(``samlit.model.module``) consumes them, the run layer (``samlit.run``) reads what the module predicted.

Frames: *original* = the item's own pixels (H, W) (a page, or a crop of it); *SAM frame* = the image resized so its
long side is 1024 (``ResizeLongestSide``; h, w), padded to 1024 x 1024 by ``Sam.preprocess``; *decoder frame* = the
256 x 256 grid of the mask decoder's ``low_res_logits``, covering the padded 1024 x 1024 input.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch


class Group(TypedDict, total=False):
    """One item of a batch (N = its instances, P = points per instance).

    key: ``<image key>`` or ``<image key>-s<i>`` (instance i's crop).
    source: (image key, instance index or ``None`` for the page, augmentation view): the run layer reads the frame
        image of the few items a figure draws from it.
    view: augmentation view (0 = the image itself).
    embedding: (1, 256, 64, 64) float16 or float32, the frozen image encoder's output for this frame (prepared;
        absent with ``cache=none``, or when the run keeps the embeddings on its device: then ``image_digest`` names
        the resident one).
    interm_embedding: (1, 64, 64, C) float16 or float32, HQ mode only (``samlit.model.hq``): the output of the
        encoder's first global-attention block, channels last, C the encoder width; prepared and carried like
        ``embedding``.
    image: (3, h, w) uint8, the frame in the SAM frame; present only without a prepared embedding (``cache=none``).
    image_digest: ``samlit.core.digests.image_digest`` of that frame image (the embedding's identity).
    masks: (N, H, W) bool instance masks, original frame.
    low_res_targets: (N, 256, 256) float32 in [0, 1], the masks area-pooled into the decoder frame.
    boxes: (N, 4) float32 xyxy box prompts, SAM frame. pixel_boxes: (N, 4) float32 the same, original pixels.
    point_coords: (N, P, 2) float32 xy, SAM frame; point_labels: (N, P) int64, 1 = positive, 0 = negative
        (only when the item drew points; label -1 is SAM's padding point).
    mask_input: (N, 256, 256) float32 low-res logits of an earlier pass, the mask prompt (only in corrective-click
        passes, ``samlit.model.interactive``: the model adds it, the data never does).
    original_size: (H, W) ints. input_size: (h, w) ints.
    crop_box: (x0, y0, x1, y1) ints, where a crop sits on its page (crop mode only).
    """

    key: str
    source: tuple[str, int | None, int]
    view: int
    embedding: torch.Tensor
    interm_embedding: torch.Tensor
    image: torch.Tensor
    image_digest: str
    masks: torch.Tensor
    low_res_targets: torch.Tensor
    boxes: torch.Tensor
    pixel_boxes: torch.Tensor
    point_coords: torch.Tensor
    point_labels: torch.Tensor
    mask_input: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]


Batch = list[Group]


class Prediction(TypedDict, total=False):
    """What a val/test step predicted for one item (CPU tensors): ``key``, ``pred`` (N, H, W) bool, ``masks`` and
    ``pixel_boxes`` as in ``Group``, its ``source``; ``strokes``: its masks' ``samlit.core.strokes.stroke_scores``
    (score name -> (N,) float64 NumPy array), computed once in the step for the stage's metrics and the per-image
    rows; ``image`` (3, h, w) uint8 once the run layer has read it for a figure (``samlit.run.testing``)."""

    key: str
    pred: torch.Tensor
    masks: torch.Tensor
    pixel_boxes: torch.Tensor
    source: tuple[str, int | None, int]
    strokes: dict[str, np.ndarray]
    image: torch.Tensor


def points_of(group: Group) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A group's point prompts (coords (N, P, 2), labels (N, P)), or ``None``."""
    return (group["point_coords"], group["point_labels"]) if "point_coords" in group else None

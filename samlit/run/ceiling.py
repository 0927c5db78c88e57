"""The frame ceiling: the best IoU *any* decoder could reach through a frame, measured on the data where the report
is made (``frame_ceilings``: the test split through the page and through box crops, read from the store).

The oracle's logits are the true masks area-pooled into the decoder's 256 x 256 frame (``low_res_targets``);
they are upsampled to the image exactly as ``Sam.postprocess_masks`` upsamples the decoder's logits and
thresholded at the one threshold that is best over the whole data set. What is lost is lost to the frame's
resolution: through the page of a 200-dpi scan that caps stamp ink near IoU 0.5, through a box crop near 0.9.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samlit.core.masks import mask_scores

THRESHOLDS = tuple(float(t) for t in np.linspace(0.05, 0.95, 19))


def upsample_low_res(
    low_res: torch.Tensor, *, input_size: tuple[int, int], original_size: tuple[int, int], target_length: int = 1024
) -> torch.Tensor:
    """(N, 256, 256) -> (N, H, W), as ``Sam.postprocess_masks``: bilinear to the padded frame, unpad, bilinear to
    the original size."""
    frame = F.interpolate(
        low_res[:, None].float(), (target_length, target_length), mode="bilinear", align_corners=False
    )
    frame = frame[..., : input_size[0], : input_size[1]]
    return F.interpolate(frame, original_size, mode="bilinear", align_corners=False)[:, 0]


def frame_ceiling(items: Iterable[dict[str, Any]], *, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, Any]:
    """Oracle IoU over ``items`` (groups of ``to_sam_frame``: one frame, page or crop): ``iou`` (mean per-mask IoU
    at the best threshold), ``threshold`` and ``n_masks``."""
    cuts = torch.tensor(thresholds)
    totals, masks = torch.zeros(len(thresholds), dtype=torch.float64), 0
    for group in items:
        if not len(group["masks"]):
            continue
        up = upsample_low_res(
            group["low_res_targets"], input_size=group["input_size"], original_size=group["original_size"]
        )
        truth = torch.from_numpy(np.asarray(group["masks"], dtype=bool))  # a dataset's item: packed masks
        for i, cut in enumerate(cuts):
            totals[i] += mask_scores(up > cut, truth)[0].double().sum()
        masks += len(truth)
    if not masks:
        return {"iou": None, "threshold": None, "n_masks": 0}
    best = int(torch.argmax(totals))
    return {"iou": round(float(totals[best]) / masks, 4), "threshold": round(thresholds[best], 2), "n_masks": masks}


def frame_ceilings(datamodule: Any, split: str = "test") -> dict[str, Any]:
    """Oracle IoU of ``split`` through the page (``none``) and through box crops (``box``): the run's own frame is
    read with its features, the other frame's items were prepared without (``prepare(other_frame=True)``)."""
    return {
        crop: frame_ceiling(
            datamodule.dataset(split, train=False, crop=crop, features="run" if crop == datamodule.crop else None)
        )
        for crop in ("none", "box")
    }

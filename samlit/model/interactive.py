"""Corrective clicks on cached embeddings: the prompts of the next decoder pass, and the N-click evaluation.

Each pass adds one click per mask to its prompts (box, earlier points) and may feed the previous pass's
``low_res_logits`` back as the mask prompt, as a user of ``SamPredictor`` does; only the decoder runs again, so a
pass costs a decoder call and no encoder call. Training draws clicks at random from the error
(``samlit.core.clicks.sample_click``, in the decoder's 256 x 256 frame); evaluation puts them at the centre of the
largest error region (``centre_click``, at the image's original resolution), as micro-sam's and SAM 2's trainers
and RITM's NoC protocol do (micro-sam: ``micro_sam.training.sam_trainer``; SAM 2: ``sam2.modeling.sam2_utils.
get_next_point``; Sofiiuk et al., "Reviving iterative training with mask guidance", ICIP 2022).

A mask with nothing left to correct gets a padding point (label -1, which SAM's prompt encoder ignores), so every
mask of an image keeps the same number of point tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from samlit.core.clicks import Click, centre_click
from samlit.core.masks import mask_scores

PAD_LABEL = -1  # SAM's prompt encoder: a point that is not a point (``not_a_point_embed``)
LEVEL_TOLERANCE = 1e-6  # float32 IoUs: 0.9 is stored as 0.89999998
DECODER_STRIDE = 4  # one pixel of the 256 x 256 decoder frame is 4 x 4 pixels of the 1024 x 1024 input


def click_prompts(
    clicks: Sequence[Click | None], *, scale: tuple[float, float], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per mask as point prompts in SAM's 1024 frame.

    Args:
        clicks: ``(x, y, label)`` per mask in some pixel grid, or ``None`` (a padding point, label -1).
        scale: ``(sx, sy)``: x_sam = x * sx, y_sam = y * sy. From an image's original pixels: the factors of
            ``ResizeLongestSide.apply_coords`` (``input_size / original_size``); from the decoder's 256 x 256 frame
            use ``decoder_frame_prompt`` instead.

    Returns:
        coords (N, 1, 2) float32 and labels (N, 1) int64.
    """
    coords = torch.tensor([[c[0] * scale[0], c[1] * scale[1]] if c else [0.0, 0.0] for c in clicks], device=device)
    labels = torch.tensor([c[2] if c else PAD_LABEL for c in clicks], dtype=torch.int64, device=device)
    return coords.reshape(-1, 1, 2).float(), labels.reshape(-1, 1)


def decoder_frame_prompts(
    clicks: Sequence[Click | None], *, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``click_prompts`` for clicks on the decoder's 256 x 256 grid: pixel (x, y) covers input pixels
    4x .. 4x + 3, whose centre is 4x + 1.5 before the prompt encoder's +0.5."""
    coords, labels = click_prompts(clicks, scale=(DECODER_STRIDE, DECODER_STRIDE), device=device)
    return coords + (DECODER_STRIDE - 1) / 2, labels


def with_points(
    points: tuple[torch.Tensor, torch.Tensor] | None, new: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``points`` (coords (N, P, 2), labels (N, P), or ``None``) with ``new`` (N, Q, 2), (N, Q) appended."""
    if points is None:
        return new
    return torch.cat([points[0], new[0].to(points[0])], dim=1), torch.cat([points[1], new[1].to(points[1])], dim=1)


Decode = Callable[[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None], torch.Tensor]
ToMasks = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def click_ious(
    *,
    decode: Decode,
    to_masks: ToMasks,
    truth: torch.Tensor,
    scale: tuple[float, float],
    clicks: int,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    low_res_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-mask IoU after 0, 1, ..., ``clicks`` corrective clicks (the N-click evaluation; deterministic).

    Click k goes to the centre of the largest error region of the masks after click k - 1 (``centre_click``) and
    the decoder gets the earlier prompts, the new click and the previous pass's logits as the mask prompt.

    Args:
        decode: ``decode(points, mask_input) -> low_res_logits`` (N, 256, 256): the decoder on the image's boxes
            with these point prompts (SAM frame; ``None`` = none) and mask prompt (``None`` = none).
        to_masks: (N, 256, 256) logits -> (N, H, W) bool masks at the original resolution.
        truth: (N, H, W) bool ground truth.
        scale: original pixels -> SAM frame (``click_prompts``).
        points: the prompts' own points, kept in every pass.
        low_res_logits: pass 0's logits when already decoded (else ``decode(points, None)``).

    Returns:
        (N, clicks + 1) float32 CPU tensor; column 0 is the box (and ``points``) alone.
    """
    logits = decode(points, None) if low_res_logits is None else low_res_logits
    masks = to_masks(logits)
    ious = [mask_scores(masks, truth)[0].cpu()]
    for _ in range(clicks):
        placed = [centre_click(m, t) for m, t in zip(masks, truth, strict=True)]
        points = with_points(points, click_prompts(placed, scale=scale, device=logits.device))
        logits = decode(points, logits)
        masks = to_masks(logits)
        ious.append(mask_scores(masks, truth)[0].cpu())
    return torch.stack(ious, dim=1)


def clicks_to_reach(ious: torch.Tensor | np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """NoC: per mask, the number of clicks after which IoU first reaches ``level`` (0 = the box alone does).

    Args:
        ious: (N, C + 1) per-mask IoU after 0..C clicks (``click_ious``).

    Returns:
        clicks (N,) int64 (C for a mask that never reaches ``level``: RITM's convention) and reached (N,) bool.
        IoU is compared with ``level`` - 1e-6: a float32 IoU of exactly 9/10 counts as reaching 0.90.
    """
    reached_at = np.asarray(ious, dtype=np.float64) >= level - LEVEL_TOLERANCE
    reached = reached_at.any(axis=1)
    first = np.where(reached, reached_at.argmax(axis=1), reached_at.shape[1] - 1)
    return first.astype(np.int64), reached

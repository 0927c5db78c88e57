"""HQ mode (``model.hq=true``): SAM's mask decoder becomes HQ-SAM's, an extra HQ output token whose mask is drawn
on the decoder's upscaled features fused with an early encoder feature.

Ke et al., *Segment Anything in High Quality*, NeurIPS 2023 (SysCV/sam-hq). The decoder is
``segment_anything_hq.modeling.MaskDecoderHQ`` itself (package ``segment-anything-hq``), so parameter names are
HQ-SAM's: an HQ-SAM checkpoint loads as ``model.weights=<path>`` and an HQ export loads in stock
``segment_anything_hq.sam_model_registry[...]``. Its parts beyond SAM's decoder (``HQ_PARTS``):

- ``hf_token`` (1, 256) and ``hf_mlp``: the HQ output token and its hypernetwork MLP (256 -> 32 channels);
- ``compress_vit_feat``: the early ViT feature (B, C, 64, 64), C the encoder width (96 tiny, 768 vit_b, 1024 vit_l,
  1280 vit_h) -> (B, 32, 256, 256), two transposed convolutions;
- ``embedding_encoder``: the final embedding (B, 256, 64, 64) -> (B, 32, 256, 256), the same shape;
- ``embedding_maskfeature``: two 3x3 convolutions at 256 x 256 on SAM's upscaled mask features, to which the sum of
  the two above is added: the HQ token's mask features.

The early feature is the output of the encoder's first global-attention block (``interm_embedding``,
(1, 64, 64, C), channels last as HQ-SAM's encoder returns it); the prepare stage stores it beside the embedding.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
HQ_TRAIN = ("hq", "hq+decoder")
# the mask an HQ decoder returns: the HQ token's (HQ-SAM's hq_token_only=True), SAM's token 0 + the HQ token (logits
# summed, hq_token_only=False), or SAM's decoder alone, the HQ token left out (what the zero-shot pass reports while
# the HQ parts are fresh: exactly SAM's mask, since an extra token in the two-way transformer changes SAM's tokens too)
MASK_OUTPUTS = ("hq", "sam+hq", "sam")
INTERM = "interm_embedding"  # the early ViT feature's name in groups and store entries


def hq_decoder(*, vit_dim: int, hq_token_only: bool = True) -> nn.Module:
    """HQ-SAM's ``MaskDecoderHQ`` with SAM's decoder settings (as ``segment_anything_hq.build_sam``) for an encoder
    of width ``vit_dim``. Two plain attributes ride on it: ``mask_output`` (``MASK_OUTPUTS``; ``hq_token_only``
    gives ``hq``, else ``sam+hq``) and ``hq_fresh`` (True until HQ parts are loaded from a file)."""
    with warnings.catch_warnings():  # segment_anything_hq imports timm's deprecated paths and re-registers models
        warnings.simplefilter("ignore")
        from segment_anything_hq.modeling import MaskDecoderHQ, TwoWayTransformer

    decoder = MaskDecoderHQ(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        vit_dim=vit_dim,
    )
    decoder.mask_output = "hq" if hq_token_only else "sam+hq"
    decoder.hq_fresh = True
    return decoder


def is_hq(decoder: nn.Module) -> bool:
    """Whether ``decoder`` is HQ-SAM's (it has the HQ output token)."""
    return hasattr(decoder, "hf_token")


def hq_keys(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """The keys of a SAM state_dict (``mask_decoder.…`` names) or of a decoder's own that belong to HQ parts."""
    return [k for k in state_dict if k.removeprefix("mask_decoder.").split(".")[0] in HQ_PARTS]


def set_trainable(decoder: nn.Module, *, hq_train: str) -> None:
    """What trains in HQ mode: ``hq`` = the HQ parts alone (HQ-SAM's recipe: SAM's decoder stays frozen), or
    ``hq+decoder`` = the whole decoder, except, when the mask is the HQ token's alone (``mask_output="hq"``), SAM's
    mask-token MLPs, which then shape no output (left trainable, they would get no gradient: DDP with
    ``find_unused_parameters=false`` stops on them). Raises ValueError for another choice."""
    if hq_train not in HQ_TRAIN:
        raise ValueError(f"hq_train={hq_train!r} must be one of {', '.join(HQ_TRAIN)}")
    decoder.requires_grad_(hq_train == "hq+decoder")
    if decoder.mask_output == "hq":
        decoder.output_hypernetworks_mlps.requires_grad_(False)
    for part in HQ_PARTS:
        getattr(decoder, part).requires_grad_(True)


def first_global_block(encoder: nn.Module) -> int:
    """Index of the encoder's first global-attention block (``window_size == 0``): where HQ-SAM takes its early
    feature (vit_b: 2, vit_l: 5, vit_h: 7, tiny: 1)."""
    return next(i for i, block in enumerate(encoder.blocks) if block.window_size == 0)


def hq_features(decoder: nn.Module, *, embedding: torch.Tensor, interm_embedding: torch.Tensor) -> torch.Tensor:
    """The fused features (B, 32, 256, 256) of HQ-SAM's ``MaskDecoderHQ.forward``: ``embedding_encoder`` of the
    embedding (B, 256, 64, 64) + ``compress_vit_feat`` of the early feature (B, 64, 64, C), channels last."""
    vit_features = interm_embedding.permute(0, 3, 1, 2).to(embedding.dtype)
    return decoder.embedding_encoder(embedding) + decoder.compress_vit_feat(vit_features)


@contextmanager
def sam_token_while_fresh(decoder: nn.Module) -> Iterator[bool]:
    """While an HQ decoder's HQ parts are fresh (never loaded from a file), make it decode as SAM's own decoder
    (``mask_output="sam"``: token 0, the HQ token left out of the transformer): the zero-shot pass then reports
    SAM itself, not an untrained token. Yields whether it did."""
    if not is_hq(decoder) or not decoder.hq_fresh:
        yield False
        return
    chosen, decoder.mask_output = decoder.mask_output, "sam"
    try:
        yield True
    finally:
        decoder.mask_output = chosen


def hq_summary(decoder: nn.Module, *, hq_train: str | None, zero_shot_sam_token: bool) -> dict[str, Any] | None:
    """What metrics.json says of HQ mode (``None`` outside it): ``mask`` (``MASK_OUTPUTS``), ``train``
    (``model.hq_train``), ``zero_shot_mask`` (``sam`` when the zero-shot pass reported SAM's own decoder)."""
    if not is_hq(decoder):
        return None
    return {
        "mask": decoder.mask_output,
        "train": hq_train,
        "zero_shot_mask": "sam" if zero_shot_sam_token else decoder.mask_output,
    }

"""Build SAM models from segment-anything's own classes: ``tiny`` (offline default) and ``vit_b/l/h``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samlit.core.errors import SamlitError
from samlit.model.weights import decoder_state, is_decoder_only, load_strict, read_state_dict, resolve_weights

IMAGE_SIZE = 1024  # SAM's input frame (long side after ResizeLongestSide, then padded square)
PATCH_SIZE = 16
EMBED_DIM = 256  # prompt / image-embedding channels: 256 x 64 x 64 for every model


@dataclass(frozen=True)
class EncoderSpec:
    """The ViT image encoder's size; everything after it is identical across models."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


# Same numbers as segment_anything.build_sam; ``tiny`` keeps the 1024 -> 64x64x256 frame with a 2-block ViT
# (~0.6 s per image on a 2-core CPU) so the whole pipeline runs offline without downloaded weights.
ENCODERS: dict[str, EncoderSpec] = {
    "tiny": EncoderSpec(embed_dim=96, depth=2, num_heads=2, global_attn_indexes=(1,)),
    "vit_b": EncoderSpec(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": EncoderSpec(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": EncoderSpec(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}


def build_sam(
    *,
    model_type: str,
    weights: str = "random",
    weights_dir: str | Path | None = None,
    decoder_weights: str | Path | None = None,
) -> Sam:
    """Build a SAM model and load its weights.

    Args:
        model_type: one of ``tiny``, ``vit_b``, ``vit_l``, ``vit_h``.
        weights: ``random`` (keep the initialisation), ``official`` (Meta's checkpoint, downloaded into
            ``weights_dir`` and SHA-256 checked) or a path to SAM weights (a state_dict with stock key names,
            possibly wrapped, or a Lightning checkpoint), loaded with ``weights_only=True`` and ``strict=True``.
        weights_dir: where ``official`` checkpoints are downloaded to and reused from.
        decoder_weights: optional file whose mask decoder replaces the one of ``weights`` (a samlit
            ``export/sam_<model>_decoder.pth``, a run's Lightning checkpoint, or any SAM file); strict.

    Returns:
        ``Sam`` in eval mode; image (B, 3, 1024, 1024) -> embedding (B, 256, 64, 64).
    """
    if model_type not in ENCODERS:
        raise SamlitError(f"model.model_type={model_type!r} is unknown; choose one of {sorted(ENCODERS)}")
    decoder_path = Path(decoder_weights).expanduser() if decoder_weights else None
    if decoder_path is not None and not decoder_path.is_file():
        raise SamlitError(f"model.decoder_weights={decoder_weights}: no such file")
    path = resolve_weights(model_type=model_type, weights=weights, weights_dir=weights_dir)  # before a big build
    sam = _build(ENCODERS[model_type])
    if path is not None:
        state_dict = read_state_dict(path)
        found = detect_model_type(state_dict)
        if found is not None and found != model_type:
            raise SamlitError(
                f"model.weights={path} holds a {found} checkpoint but model={model_type}; "
                f"pass model={found} or a {model_type} file"
            )
        if is_decoder_only(state_dict):
            raise SamlitError(
                f"model.weights={path} holds a mask decoder only (a samlit checkpoint or decoder export); "
                f"pass it as model.decoder_weights={path} next to model.weights=official or a full SAM file"
            )
        load_strict(sam, state_dict, problem=f"model.weights={path} does not fit model={model_type}")
    if decoder_path is not None:
        decoder = decoder_state(read_state_dict(decoder_path))
        problem = f"model.decoder_weights={decoder_path} is not a SAM mask decoder"
        load_strict(sam.mask_decoder, decoder, problem=problem)
    return sam.eval()


def _build(spec: EncoderSpec) -> Sam:
    grid = IMAGE_SIZE // PATCH_SIZE
    encoder = ImageEncoderViT(
        depth=spec.depth,
        embed_dim=spec.embed_dim,
        img_size=IMAGE_SIZE,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec.num_heads,
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=spec.global_attn_indexes,
        window_size=14,
        out_chans=EMBED_DIM,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(grid, grid),
        input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def detect_model_type(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name the registry entry a SAM state_dict was made for (from encoder width and depth), or None."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, spec in ENCODERS.items():
        if spec.embed_dim == patch.shape[0] and spec.depth == depth:
            return name
    return None


def decode_prompts(
    sam: Sam, *, embedding: torch.Tensor, boxes: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder + mask decoder (single-mask output) for one image's prompts.

    Args:
        embedding: (1, 256, 64, 64) image embedding.
        boxes: (N, 4) xyxy in the 1024 frame; points: optional coords (N, P, 2) and labels (N, P) in it.

    Returns:
        low-res mask logits (N, 256, 256) and predicted IoU (N,).
    """
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    logits, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits[:, 0], iou[:, 0]


def decode_prompt_batch(
    sam: Sam,
    *,
    embeddings: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's mask decoder (single-mask output) in one call for prompts of several images: what
    ``MaskDecoder.predict_masks`` computes, with each prompt's own image embedding instead of one embedding
    repeated per prompt.

    Args:
        embeddings: (P, 256, 64, 64), row p the embedding of prompt p's image.
        sparse, dense: the prompt encoder's output for the P prompts: (P, T, 256) and (P, 256, 64, 64); every
            prompt has the same number T of sparse tokens (a box, or a box and the same number of points).

    Returns:
        low-res mask logits (P, 256, 256) and predicted IoU (P,), as ``decode_prompts`` gives per image.
    """
    decoder = sam.mask_decoder
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens[None].expand(len(sparse), -1, -1), sparse], dim=1)
    src = embeddings + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(len(src), -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos, tokens)
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou = decoder.iou_prediction_head(hs[:, 0, :])
    return masks[:, 0], iou[:, 0]  # mask token 0: the single-mask output, as multimask_output=False


def encode_image(sam: Sam, image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) uint8 image, long side 1024 (``to_sam_frame``) -> (1, 256, 64, 64) embedding: SAM's
    normalise + pad (``Sam.preprocess``), then the image encoder, on the model's device."""
    device = next(sam.image_encoder.parameters()).device
    return sam.image_encoder(sam.preprocess(image[None].to(device).float()))

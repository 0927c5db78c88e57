"""Build SAM models from segment-anything's own classes: ``tiny`` (offline default) and ``vit_b/l/h``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samlit.core.errors import SamlitError
from samlit.model.hq import HQ_TRAIN, INTERM, first_global_block, hq_decoder, hq_features, hq_keys, is_hq, set_trainable
from samlit.model.weights import decoder_state, is_decoder_only, load_strict, read_state_dict, resolve_weights

log = logging.getLogger(__name__)

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
    hq: bool = False,
    hq_token_only: bool = True,
    hq_train: str = "hq",
) -> Sam:
    """Build a SAM model and load its weights.

    Args:
        model_type: one of ``tiny``, ``vit_b``, ``vit_l``, ``vit_h``.
        weights: ``random`` (keep the initialisation), ``official`` (Meta's checkpoint, downloaded into
            ``weights_dir`` and SHA-256 checked) or a path to SAM weights (a state_dict with stock key names,
            possibly wrapped, or a Lightning checkpoint), loaded with ``weights_only=True`` and ``strict=True``.
            In HQ mode a path may also be a full HQ-SAM checkpoint (``segment_anything_hq`` key names); SAM weights
            leave the HQ parts as initialised.
        weights_dir: where ``official`` checkpoints are downloaded to and reused from.
        decoder_weights: optional file whose mask decoder replaces the one of ``weights`` (a samlit
            ``export/sam_<model>_decoder.pth``, a run's Lightning checkpoint, or any SAM file); strict.
        hq: HQ mode (``samlit.model.hq``): the mask decoder is HQ-SAM's ``MaskDecoderHQ``.
        hq_token_only: HQ mode: the mask is the HQ token's alone (HQ-SAM's ``hq_token_only=True``), else SAM's
            token 0 + the HQ token (logits summed).
        hq_train: HQ mode: what trains: ``hq`` (the HQ parts alone, HQ-SAM's recipe) or ``hq+decoder``. Outside HQ
            mode the whole mask decoder trains. The image and prompt encoders never do (``requires_grad`` tells).

    Returns:
        ``Sam`` in eval mode; image (B, 3, 1024, 1024) -> embedding (B, 256, 64, 64).

    Raises:
        SamlitError: an unknown model or ``hq_train``, a missing or unfit weights file (one line naming the key).
    """
    if model_type not in ENCODERS:
        raise SamlitError(f"model.model_type={model_type!r} is unknown; choose one of {sorted(ENCODERS)}")
    if hq and hq_train not in HQ_TRAIN:
        raise SamlitError(f"model.hq_train={hq_train!r} is unknown; choose one of {', '.join(HQ_TRAIN)}")
    decoder_path = Path(decoder_weights).expanduser() if decoder_weights else None
    if decoder_path is not None and not decoder_path.is_file():
        raise SamlitError(f"model.decoder_weights={decoder_weights}: no such file")
    path = resolve_weights(model_type=model_type, weights=weights, weights_dir=weights_dir)  # before a big build
    sam = _build(ENCODERS[model_type], hq=hq, hq_token_only=hq_token_only)
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
        load_sam_state(sam, state_dict, key="model.weights", path=path, model_type=model_type)
    if decoder_path is not None:
        decoder = decoder_state(read_state_dict(decoder_path))
        load_sam_state(sam.mask_decoder, decoder, key="model.decoder_weights", path=decoder_path, model_type=model_type)
    for frozen in (sam.image_encoder, sam.prompt_encoder):
        frozen.requires_grad_(False)
    if hq:
        set_trainable(sam.mask_decoder, hq_train=hq_train)
    return sam.eval()


def load_sam_state(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, key: str, path: Path, model_type: str
) -> None:
    """Load ``state_dict`` into ``module`` (a ``Sam`` or its mask decoder) strictly, except that SAM weights without
    HQ parts load into an HQ model (its HQ parts keep their initialisation: HQ-SAM's recipe starts them fresh).
    HQ-SAM weights into a plain model are a one-line SamlitError naming ``model.hq=true``."""
    decoder = getattr(module, "mask_decoder", module)
    found = hq_keys(state_dict)
    if found and not is_hq(decoder):
        raise SamlitError(f"{key}={path} holds HQ-SAM weights ({found[0]}...); pass model.hq=true to load them")
    if is_hq(decoder) and not found:
        missing = set(hq_keys(module.state_dict()))
        state_dict = {**{k: v for k, v in module.state_dict().items() if k in missing}, **state_dict}
        log.info("%s=%s holds SAM weights without HQ parts: the HQ token and fusion layers start fresh", key, path)
    what = "model=" + model_type + (" (model.hq=true)" if is_hq(decoder) else "")
    fits = f"does not fit {what}" if module is not decoder else f"is not a SAM mask decoder for {what}"
    problem = f"{key}={path} {fits}"
    load_strict(module, state_dict, problem=problem)
    if is_hq(decoder) and found:
        decoder.hq_fresh = False


def _build(spec: EncoderSpec, *, hq: bool = False, hq_token_only: bool = True) -> Sam:
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
    if hq:
        decoder = hq_decoder(vit_dim=spec.embed_dim, hq_token_only=hq_token_only)
    else:
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


def feature_names(sam: Sam) -> tuple[str, ...]:
    """What the frozen encoder gives the decoder, by name (groups, store entries): ``embedding`` and, in HQ mode,
    ``interm_embedding``."""
    return ("embedding", INTERM) if is_hq(sam.mask_decoder) else ("embedding",)


def decode_prompts(
    sam: Sam,
    *,
    embedding: torch.Tensor,
    boxes: torch.Tensor | None,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    mask_input: torch.Tensor | None = None,
    interm_embedding: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder + mask decoder (single-mask output) for one image's prompts.

    Args:
        embedding: (1, 256, 64, 64) image embedding.
        boxes: (N, 4) xyxy in the 1024 frame, or None (points alone: SAM's prompt encoder pads them itself);
            points: optional coords (N, P, 2) and labels (N, P) in it (label 1 positive, 0 negative, -1 padding:
            ignored, as in SAM's prompt encoder).
        mask_input: optional (N, 256, 256) low-res logits of an earlier pass, the mask prompt (``SamPredictor``'s
            ``mask_input``, there (N, 1, 256, 256)).
        interm_embedding: HQ mode: the early ViT feature (1, 64, 64, C) (``encode_features``).

    Returns:
        low-res mask logits (N, 256, 256) and predicted IoU (N,). In HQ mode the logits are the HQ token's (or
        token 0's + the HQ token's, ``hq_token_only=False``; ``samlit.model.hq.MASK_OUTPUTS``), as
        ``segment_anything_hq``'s ``SamPredictor`` gives; the IoU is token 0's prediction, as there.
    """
    masks = None if mask_input is None else mask_input[:, None]
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    decoder = sam.mask_decoder
    if is_hq(decoder):  # HQ-SAM's MaskDecoderHQ.forward, as the batched form (tested equal to its SamPredictor)
        if interm_embedding is None:
            raise ValueError("an HQ decoder needs the early ViT feature (interm_embedding)")
        n = len(sparse)
        fused = None
        if decoder.mask_output != "sam":
            fused = hq_features(decoder, embedding=embedding, interm_embedding=interm_embedding)
            fused = fused.expand(n, -1, -1, -1)
        embeddings = embedding.expand(n, -1, -1, -1)
        return decode_prompt_batch(sam, embeddings=embeddings, sparse=sparse, dense=dense, fused=fused)
    logits, iou = decoder(
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
    fused: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's mask decoder (single-mask output) in one call for prompts of several images: what
    ``MaskDecoder.predict_masks`` (HQ mode: ``MaskDecoderHQ.predict_masks``) computes, with each prompt's own image
    embedding instead of one embedding repeated per prompt.

    Args:
        embeddings: (P, 256, 64, 64), row p the embedding of prompt p's image.
        sparse, dense: the prompt encoder's output for the P prompts: (P, T, 256) and (P, 256, 64, 64); every
            prompt has the same number T of sparse tokens (a box, or a box and the same number of points).
        fused: HQ mode: (P, 32, 256, 256), row p ``samlit.model.hq.hq_features`` of prompt p's image.

    Returns:
        low-res mask logits (P, 256, 256) and predicted IoU (P,), as ``decode_prompts`` gives per image.
    """
    decoder = sam.mask_decoder
    # mask_output "sam": SAM's decoder alone, without the HQ token among the tokens (it would change what the
    # two-way transformer gives SAM's own tokens)
    hq = is_hq(decoder) and decoder.mask_output != "sam"
    if hq and fused is None:
        raise ValueError("an HQ decoder needs the fused HQ features of every prompt (samlit.model.hq.hq_features)")
    output_tokens = [decoder.iou_token.weight, decoder.mask_tokens.weight] + ([decoder.hf_token.weight] if hq else [])
    tokens = torch.cat(output_tokens, dim=0)
    tokens = torch.cat([tokens[None].expand(len(sparse), -1, -1), sparse], dim=1)
    src = embeddings + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(len(src), -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos, tokens)
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    b, c, h, w = upscaled.shape
    iou = decoder.iou_prediction_head(hs[:, 0, :])[:, 0]
    sam_mask = None
    if not hq or decoder.mask_output == "sam+hq":
        # every SAM mask token's mask, as SAM computes them (the unused ones get zero gradients, not none: an
        # optimizer's weight decay then treats both forms alike); token 0 is the single mask (multimask_output=False)
        hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
        sam_mask = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)[:, 0]
    if not hq:
        return sam_mask, iou
    hq_upscaled = decoder.embedding_maskfeature(upscaled) + fused
    hq_token = hs[:, 1 + decoder.num_mask_tokens - 1, :]  # after the iou token and SAM's 4 mask tokens
    hq_mask = (decoder.hf_mlp(hq_token)[:, None] @ hq_upscaled.view(b, c, h * w)).view(b, h, w)
    return (hq_mask if decoder.mask_output == "hq" else sam_mask + hq_mask), iou


def encode_features(sam: Sam, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the frozen encoder gives the decoder for a (3, h, w) uint8 image, long side 1024 (``to_sam_frame``):
    SAM's normalise + pad (``Sam.preprocess``), then the image encoder, on the model's device.

    Returns:
        ``embedding`` (1, 256, 64, 64) and, in HQ mode, ``interm_embedding`` (1, 64, 64, C): the output of the first
        global-attention block, channels last (HQ-SAM's ``interm_embeddings[0]``), C the encoder width.
    """
    encoder = sam.image_encoder
    device = next(encoder.parameters()).device
    pixels = sam.preprocess(image[None].to(device).float())
    if not is_hq(sam.mask_decoder):
        return {"embedding": encoder(pixels)}
    taken: list[torch.Tensor] = []
    hook = encoder.blocks[first_global_block(encoder)].register_forward_hook(lambda m, i, out: taken.append(out))
    try:
        embedding = encoder(pixels)
    finally:
        hook.remove()
    return {"embedding": embedding, INTERM: taken[0]}


def encode_image(sam: Sam, image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) uint8 image, long side 1024 (``to_sam_frame``) -> (1, 256, 64, 64) embedding (``encode_features``'
    ``embedding``)."""
    return encode_features(sam, image)["embedding"]

"""LoRA adapters (``peft``) on SAM's mask decoder and image encoder, and their merge into weights stock SAM loads.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022: a frozen linear layer ``W`` gets a
trainable update ``(lora_alpha / r) * B @ A`` (A: (r, in), B: (out, r), B starting at zero, so an adapted model
starts equal to its base). The adapters are ``peft``'s own LoRA layers, injected into segment-anything's modules
in place (``peft.inject_adapter_in_model``: no wrapper model, so every other name stays stock):

- the **mask decoder**'s two-way transformer: each attention (``self_attn``, ``cross_attn_token_to_image``,
  ``cross_attn_image_to_token``, ``final_attn_token_to_image``) has ``q_proj``, ``k_proj``, ``v_proj``,
  ``out_proj``; each layer's MLP ``lin1``, ``lin2``. Default: ``q_proj``, ``v_proj`` (the LoRA paper's choice).
- the **image encoder**'s ViT blocks: ``attn.qkv`` (q, k and v in one fused linear layer, as SAM stores them, so
  an adapter on it updates all three in one low-rank space; SAMed / micro-sam split it into q and v adapters,
  which cannot be merged into the fused weight more simply), ``attn.proj``, ``mlp.lin1``, ``mlp.lin2``; on the
  blocks ``blocks`` names (finetune-SAM's ``[0, 1, 10, 11]`` for vit_b) or all (``None``).

``stock_state_dict`` folds each adapter into its base weight (``W + peft's get_delta_weight``) without touching the
model: the result has stock key names, what ``segment_anything.sam_model_registry[...]`` loads. ``adapter_state``
is the unmerged adapters alone (``export/adapters.safetensors``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from segment_anything.modeling import Sam
from torch import nn
from torch.utils.checkpoint import checkpoint

from samlit.core.errors import SamlitError
from samlit.model.hq import HQ_PARTS

ADAPTER = "default"  # peft's adapter name
DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "lin1", "lin2")
ENCODER_TARGETS = ("qkv", "proj", "lin1", "lin2")


@dataclass(frozen=True)
class LoraSpec:
    """What adapters a run trains; ``peft=none|decoder_lora|encoder_lora|lora`` (``conf/peft``), keys as
    ``peft.LoraConfig``'s where they mean the same.

    Args:
        decoder_target_modules: mask-decoder linear layers that get an adapter, by their last name
            (``DECODER_TARGETS``); empty: no decoder adapters.
        encoder_target_modules: image-encoder linear layers that get an adapter (``ENCODER_TARGETS``); empty: the
            encoder stays frozen and its embeddings stay cached.
        r: the adapters' rank (> 0).
        lora_alpha: the update's scale is ``lora_alpha / r`` (> 0).
        lora_dropout: dropout on the adapter's input while training, in [0, 1).
        blocks: the encoder blocks that get adapters (indices), ``None``: all.
        train_decoder: whether the mask decoder's own weights also train (HQ mode: its HQ parts train as
            ``model.hq_train`` says either way).
        checkpointing: gradient checkpointing of the encoder blocks (recompute in the backward pass: less memory
            for vit_l / vit_h, more time: ``bench/lora_step.py``); only with encoder adapters.

    Raises:
        SamlitError: a rank or alpha <= 0, a dropout outside [0, 1), an unknown target module, checkpointing without
            encoder adapters (one line naming the ``peft.<key>``).
    """

    decoder_target_modules: tuple[str, ...] = ()
    encoder_target_modules: tuple[str, ...] = ()
    r: int = 4
    lora_alpha: float = 4.0
    lora_dropout: float = 0.0
    blocks: tuple[int, ...] | None = None
    train_decoder: bool = True
    checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("decoder_target_modules", "encoder_target_modules"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value or ()))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise SamlitError(f"peft.r={self.r!r} must be a whole number > 0 (the adapters' rank, e.g. peft.r=4)")
        alpha = self.lora_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha <= 0:
            raise SamlitError(f"peft.lora_alpha={alpha!r} must be a number > 0 (the update's scale is lora_alpha / r)")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise SamlitError(f"peft.lora_dropout={self.lora_dropout!r} must be in [0, 1)")
        for name, known in (
            ("decoder_target_modules", DECODER_TARGETS),
            ("encoder_target_modules", ENCODER_TARGETS),
        ):
            unknown = [t for t in getattr(self, name) if t not in known]
            if unknown:
                raise SamlitError(
                    f"peft.{name}: {unknown[0]!r} is not a linear layer there; choose from {', '.join(known)}"
                )
        if self.checkpointing and not self.adapts_encoder:
            raise SamlitError(
                "peft.checkpointing=true needs encoder adapters (peft=encoder_lora or peft=lora): without them the "
                "encoder runs once per item, without gradients"
            )

    @property
    def adapts_decoder(self) -> bool:
        return bool(self.decoder_target_modules)

    @property
    def adapts_encoder(self) -> bool:
        return bool(self.encoder_target_modules)

    @property
    def enabled(self) -> bool:
        return self.adapts_decoder or self.adapts_encoder

    def settings(self) -> dict[str, Any]:
        """The settings a checkpoint must have been trained with to resume (JSON-able)."""
        out = asdict(self)
        out.pop("checkpointing")  # memory, not weights: a resume may switch it
        out["decoder_target_modules"] = list(self.decoder_target_modules)
        out["encoder_target_modules"] = list(self.encoder_target_modules)
        out["blocks"] = None if self.blocks is None else list(self.blocks)
        return out


NO_ADAPTERS = LoraSpec()


def apply_lora(sam: Sam, spec: LoraSpec) -> Sam:
    """Inject ``spec``'s adapters into ``sam`` in place (peft's LoRA layers; their A, B train, the layers they wrap
    stay frozen) and set what else trains (``spec.train_decoder``). No adapters: ``sam`` unchanged.

    Raises:
        SamlitError: ``spec.blocks`` outside the encoder's depth.
    """
    if not spec.enabled:
        return sam
    from peft import LoraConfig, inject_adapter_in_model  # imported on demand: it imports transformers

    common = {"r": spec.r, "lora_alpha": spec.lora_alpha, "lora_dropout": spec.lora_dropout, "bias": "none"}
    decoder = sam.mask_decoder
    trained = {name: p.requires_grad for name, p in decoder.named_parameters()}  # as build_sam left it (HQ mode)
    if spec.adapts_decoder:
        inject_adapter_in_model(
            LoraConfig(target_modules=list(spec.decoder_target_modules), **common), decoder, adapter_name=ADAPTER
        )
        for name, param in decoder.named_parameters():
            if "lora_" in name:
                continue
            base = name.replace(".base_layer.", ".")
            # train_decoder=false: SAM's own decoder weights freeze; HQ mode's fresh parts keep training
            param.requires_grad_(trained[base] and (spec.train_decoder or not is_sam_decoder_weight(base)))
    elif not spec.train_decoder:
        for name, param in decoder.named_parameters():
            param.requires_grad_(param.requires_grad and not is_sam_decoder_weight(name))
    if spec.adapts_encoder:
        encoder = sam.image_encoder
        depth = len(encoder.blocks)
        outside = [b for b in spec.blocks or () if not 0 <= b < depth]
        if outside:
            raise SamlitError(
                f"peft.blocks: block {outside[0]} is outside this encoder's {depth} blocks (0..{depth - 1}); "
                "pass indices in that range, or peft.blocks=null for all"
            )
        config = LoraConfig(
            target_modules=list(spec.encoder_target_modules),
            layers_to_transform=list(spec.blocks) if spec.blocks is not None else None,
            layers_pattern="blocks" if spec.blocks is not None else None,
            **common,
        )
        inject_adapter_in_model(config, encoder, adapter_name=ADAPTER)
        for name, param in encoder.named_parameters():
            param.requires_grad_("lora_" in name)
        if spec.checkpointing:
            checkpoint_blocks(encoder)
    return sam


def is_sam_decoder_weight(name: str) -> bool:
    """Whether a mask-decoder parameter name is SAM's own (not one of HQ mode's added parts)."""
    return name.split(".")[0] not in HQ_PARTS


def checkpoint_blocks(encoder: nn.Module) -> None:
    """Gradient checkpointing of each ViT block (``torch.utils.checkpoint``, non-reentrant): the block's
    activations are recomputed in the backward pass instead of kept. Forward hooks still fire once per call."""
    for block in encoder.blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    """peft's LoRA layers in ``module``, by their name in it."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}


def has_adapters(module: nn.Module) -> bool:
    """Whether ``module`` holds any LoRA layer (cheap: no peft import when it holds none)."""
    return any(".lora_A." in name for name, _ in module.named_parameters())


def stock_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state_dict with every adapter merged into the weight it wraps, under the wrapped layer's own
    (stock) names: ``x.base_layer.weight`` + the adapter's delta (peft's ``get_delta_weight``) -> ``x.weight``,
    ``x.base_layer.bias`` -> ``x.bias``, ``x.lora_*`` dropped. The model is not changed. Without adapters it is
    ``module.state_dict()``."""
    state = module.state_dict()
    if not has_adapters(module):
        return state
    layers = lora_layers(module)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if ".base_layer." in key:
            prefix, tail = key.split(".base_layer.", 1)
            layer = layers[prefix]
            if tail == "weight":
                with torch.no_grad():
                    delta = layer.get_delta_weight(ADAPTER)
                    value = (value.float() + delta.float()).to(value.dtype)
            key = f"{prefix}.{tail}"
        out[key] = value
    return out


def adapter_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters alone (``lora_A`` / ``lora_B`` weights, keys as in ``module``, peft's adapter name
    ``default`` included), plain contiguous CPU tensors: what ``export/adapters.safetensors`` holds."""
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items() if ".lora_" in key}


def load_adapters(sam: Sam, path: str | Path) -> LoraSpec:
    """Put the adapters of an ``adapters.safetensors`` (``adapter_state`` + ``adapter_metadata``) on ``sam`` (the
    base model they were trained on, without adapters): ``apply_lora`` with the file's settings, then its tensors.
    Returns those settings.

    Raises:
        SamlitError: not such a file, or adapters that do not fit ``sam``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise SamlitError(f"{path} is not a readable safetensors file ({error})") from None
    if metadata.get("format") != "samlit-lora":
        raise SamlitError(f"{path} is not a samlit adapters file (export/adapters.safetensors of a peft=... run)")
    spec = LoraSpec(**json.loads(metadata["peft"]))
    apply_lora(sam, spec)
    try:
        missing, unexpected = sam.load_state_dict(tensors, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        reason = (str(error).splitlines() or ["size mismatch"])[-1].strip()
        raise SamlitError(f"{path} does not fit this model ({reason}); pass the model_type it was trained on") from None
    lacking = [k for k in missing if ".lora_" in k]
    if unexpected or lacking:
        what = unexpected[0] if unexpected else lacking[0]
        raise SamlitError(f"{path} does not fit this model ({what}); pass the model_type it was trained on")
    return spec


def adapter_metadata(spec: LoraSpec, *, model_type: str) -> dict[str, str]:
    """safetensors metadata of an adapters file: the settings that made them and how to apply them."""
    return {
        "format": "samlit-lora",
        "model_type": model_type,
        "peft": json.dumps(spec.settings()),
        "apply": "samlit.model.lora.load_adapters(sam, path): apply_lora(sam, LoraSpec(**peft)), then these keys",
    }


def parameter_counts(sam: Sam) -> dict[str, dict[str, int]]:
    """Parameters per part of ``sam`` (``image_encoder``, ``prompt_encoder``, ``mask_decoder``): ``total``,
    ``trainable`` and, of those, ``adapters`` (LoRA's A and B)."""
    counts = {}
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        params = list(getattr(sam, part).named_parameters())
        counts[part] = {
            "total": sum(p.numel() for n, p in params if ".lora_" not in n),
            "trainable": sum(p.numel() for _, p in params if p.requires_grad),
            "adapters": sum(p.numel() for n, p in params if ".lora_" in n),
        }
    return counts


def spec_from_config(node: Any) -> LoraSpec:
    """A run's ``peft`` config node (``config_resolved.yaml``; absent in runs from before adapters) as a
    ``LoraSpec``."""
    if not node:
        return NO_ADAPTERS
    return LoraSpec(**{k: v for k, v in dict(node).items() if not str(k).startswith("_")})


def load_trained(sam: Sam, state_dict: dict[str, torch.Tensor], *, path: str) -> None:
    """Load a run's checkpoint ``state_dict`` (``sam.``-prefixed keys: what trained, adapters included) into
    ``sam`` built with the run's base weights and adapters (``apply_lora``); the frozen weights the checkpoint
    leaves out keep ``sam``'s.

    Raises:
        SamlitError: a key ``sam`` lacks (other adapter settings), or an adapter or decoder weight the file lacks.
    """
    own = {k.removeprefix("sam."): v for k, v in state_dict.items() if k.startswith("sam.")}
    missing, unexpected = sam.load_state_dict(own, strict=False)
    needed = [k for k in missing if ".lora_" in k or k.startswith("mask_decoder.")]
    if unexpected or needed:
        what = f"holds {unexpected[0]}" if unexpected else f"lacks {needed[0]}"
        raise SamlitError(f"{path} {what}: it was not trained with this run's peft settings (config_resolved.yaml)")

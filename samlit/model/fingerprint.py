"""What the frozen model's features are a function of: the encoder's weights, the model type, SAM's preprocessing
constants and the autocast dtype it runs under. ``sam_fingerprint`` names them in one string; the store keys every
entry's features by it (``samlit.data.store``), so other weights, another model or another precision never read a
stale embedding."""

from __future__ import annotations

import hashlib
import json

from segment_anything.modeling import Sam
from torch import nn

from samlit.core.digests import tensor_bytes
from samlit.model.sam import detect_model_type

# Lightning's trainer.precision -> the autocast dtype its forward context puts the encoder under
AUTOCAST = {"bf16-mixed": "torch.bfloat16", "16-mixed": "torch.float16"}


def encoder_fingerprint(encoder: nn.Module, **context: object) -> str:
    """16 hex digits identifying an encoder: every weight (name, dtype, shape, bytes) and ``context`` (model type,
    preprocessing constants, autocast dtype...). Hashing vit_h's 2.5 GB takes a few seconds."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()[:16]


def sam_fingerprint(sam: Sam, *, precision: str = "32-true") -> str:
    """``<model type>-<16 hex digits>`` of ``sam``'s image encoder run under Lightning ``precision`` (e.g.
    ``32-true``, ``bf16-mixed``): its weights, model type, SAM's pixel mean/std and input size, and the autocast
    dtype that precision runs it under."""
    model_type = detect_model_type(sam.state_dict()) or type(sam.image_encoder).__name__
    context = {
        "model_type": model_type,
        "img_size": sam.image_encoder.img_size,
        "pixel_mean": sam.pixel_mean.flatten().tolist(),
        "pixel_std": sam.pixel_std.flatten().tolist(),
        "autocast": AUTOCAST.get(str(precision), "off"),
    }
    return f"{model_type}-{encoder_fingerprint(sam.image_encoder, **context)}"

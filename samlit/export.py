"""Export the fine-tuned model as a stock SAM state_dict that ``segment_anything`` loads as is."""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from samlit import atomic
from samlit.sam import build_sam


def export_sam(sam: Sam, path: Path | str) -> Path:
    """Save ``sam``'s full state_dict (stock key names, plain contiguous CPU tensors) atomically to ``path``."""
    state = {key: value.detach().cpu().contiguous().clone() for key, value in sam.state_dict().items()}
    return atomic.torch_save(state, path)


def load_exported(path: Path | str, *, model_type: str) -> Sam:
    """Load an exported file the way a user would: ``sam_model_registry[model_type](checkpoint=path)`` for
    vit_b/l/h (stock segment-anything), ``build_sam(model_type="tiny", weights=path)`` for tiny."""
    if model_type in sam_model_registry:
        return sam_model_registry[model_type](checkpoint=str(path))
    return build_sam(model_type=model_type, weights=str(path))


def verify_export(sam: Sam, path: Path | str, *, model_type: str) -> None:
    """Reload ``path`` into a fresh model and check every tensor equals ``sam``'s; raise RuntimeError if not."""
    reloaded = load_exported(path, model_type=model_type).state_dict()
    for key, value in sam.state_dict().items():
        if not torch.equal(reloaded[key], value.detach().cpu()):
            raise RuntimeError(f"export check failed: {path} differs from the trained model at {key}")

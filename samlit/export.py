"""Export the fine-tuned model as a stock SAM state_dict that ``segment_anything`` loads as is."""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from samlit import atomic
from samlit.sam import build_sam


def export_sam(sam: Sam, path: Path | str) -> Path:
    """Save ``sam``'s full state_dict (stock key names, plain contiguous CPU tensors) atomically to ``path``.
    Parameters are saved from where they are (no copy on CPU): vit_h is 2.5 GB."""
    state = {key: value.detach().cpu().contiguous() for key, value in sam.state_dict().items()}
    return atomic.torch_save(state, path)


def load_exported(path: Path | str | None, *, model_type: str) -> Sam:
    """Load an exported file the way a user would: ``sam_model_registry[model_type](checkpoint=path)`` for
    vit_b/l/h (stock segment-anything), ``build_sam(model_type="tiny", weights=path)`` for tiny.
    ``path=None``: the bare architecture (random initialisation)."""
    if model_type in sam_model_registry:
        return sam_model_registry[model_type](checkpoint=None if path is None else str(path))
    return build_sam(model_type=model_type, weights="random" if path is None else str(path))


def verify_export(sam: Sam, path: Path | str, *, model_type: str) -> None:
    """Check ``path`` the way ``load_exported`` would use it, without a second model in memory: its keys and
    shapes load strictly into a stock model built on the meta device, and every tensor (read memory-mapped)
    equals ``sam``'s. Raises RuntimeError if not."""
    reloaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    with torch.device("meta"):
        stock = load_exported(None, model_type=model_type)
    try:
        stock.load_state_dict(reloaded, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(f"export check failed: {path} does not load into a stock {model_type}: {error}") from error
    for key, value in sam.state_dict().items():
        if not torch.equal(reloaded[key], value.detach().cpu()):
            raise RuntimeError(f"export check failed: {path} differs from the trained model at {key}")

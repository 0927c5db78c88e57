"""Export the fine-tuned model: ``sam_<model>_finetuned.pth``, a full stock SAM state_dict that
``segment_anything.sam_model_registry[model](checkpoint=...)`` loads as is, and ``sam_<model>_decoder.pth``, the
mask decoder alone (stock ``mask_decoder.`` keys, a few MB) for ``model.decoder_weights=`` over official weights.
In HQ mode (``model.hq=true``) the files are ``sam_hq_<model>_finetuned.pth`` (what stock
``segment_anything_hq.sam_model_registry[model](checkpoint=...)`` loads, HQ-SAM's key names) and
``sam_hq_<model>_decoder.pth``.

    python -m samlit.export <run dir | run's .ckpt> [--weights official|<SAM .pth>] [--out DIR] [--onnx]

rebuilds both files from a run's checkpoint (the frozen encoders come from the run's ``model.weights``); ``--onnx``
adds ``sam_<model>_decoder.onnx``, the prompt encoder + mask decoder with segment-anything's ONNX interface
(``samlit.model.onnx_decoder``), checked with onnxruntime against ``SamPredictor`` before it is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.model.hq import is_hq
from samlit.model.lora import (
    LoraSpec,
    adapter_metadata,
    adapter_state,
    apply_lora,
    load_trained,
    spec_from_config,
    stock_state_dict,
)
from samlit.model.sam import build_sam
from samlit.run import rundir
from samlit.run.onnx_export import export_onnx, onnx_report, require_onnx


def export_sam(sam: Sam, path: Path | str) -> Path:
    """Save ``sam``'s full state_dict (stock key names, plain contiguous CPU tensors; LoRA adapters merged into the
    weights they wrap, ``samlit.model.lora.stock_state_dict``) atomically to ``path``. Parameters are saved from
    where they are (no copy on CPU): vit_h is 2.5 GB."""
    state = {key: value.detach().cpu().contiguous() for key, value in stock_state_dict(sam).items()}
    return atomic.torch_save(state, path)


def export_names(*, model_type: str, hq: bool = False) -> tuple[str, str]:
    """File names of the full export and the decoder export: ``sam[_hq]_<model>_finetuned.pth``,
    ``sam[_hq]_<model>_decoder.pth``."""
    stem = f"sam_hq_{model_type}" if hq else f"sam_{model_type}"
    return f"{stem}_finetuned.pth", f"{stem}_decoder.pth"


def load_exported(path: Path | str | None, *, model_type: str, hq: bool = False) -> Sam:
    """Load an exported file the way a user would: ``sam_model_registry[model_type](checkpoint=path)`` for
    vit_b/l/h (stock segment-anything; HQ mode: stock segment-anything-hq, whose model returns HQ-SAM's outputs),
    ``build_sam(model_type="tiny", weights=path, hq=hq)`` for tiny. ``path=None``: the bare architecture (random
    initialisation)."""
    checkpoint = None if path is None else str(path)
    if hq and model_type != "tiny":
        registry = hq_registry()
        return registry[model_type](checkpoint=checkpoint)
    if model_type in sam_model_registry:
        return sam_model_registry[model_type](checkpoint=checkpoint)
    return build_sam(model_type=model_type, weights="random" if path is None else str(path), hq=hq)


def hq_registry() -> dict:
    """``segment_anything_hq.sam_model_registry`` (imported on demand: it imports timm)."""
    with warnings.catch_warnings():  # timm's deprecated import paths, re-registered model names
        warnings.simplefilter("ignore")
        from segment_anything_hq import sam_model_registry as registry
    return registry


def verify_export(sam: Sam, path: Path | str, *, model_type: str, hq: bool = False) -> None:
    """Check ``path`` the way ``load_exported`` would use it, without a second model in memory: its keys and
    shapes load strictly into a stock model built on the meta device, and every tensor (read memory-mapped)
    equals ``sam``'s (adapters merged). Raises RuntimeError if not."""
    reloaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    with torch.device("meta"):
        stock = load_exported(None, model_type=model_type, hq=hq)
    try:
        stock.load_state_dict(reloaded, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(f"export check failed: {path} does not load into a stock {model_type}: {error}") from error
    key = differing_key(reloaded, stock_state_dict(sam))
    if key is not None:
        raise RuntimeError(f"export check failed: {path} differs from the trained model at {key}")


def differing_key(saved: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """The first key of ``state`` whose tensor ``saved`` lacks or holds otherwise, or ``None``."""
    for key, value in state.items():
        if key not in saved or not torch.equal(saved[key], value.detach().cpu()):
            return key
    return None


def decoder_state(sam: Sam) -> dict[str, torch.Tensor]:
    """The mask decoder's tensors under stock key names (``mask_decoder.…``; adapters merged), plain contiguous CPU
    tensors."""
    state = stock_state_dict(sam.mask_decoder)
    return {f"mask_decoder.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def export_decoder(sam: Sam, path: Path | str) -> Path:
    """Save the mask decoder alone, under stock key names (``mask_decoder.…``), atomically to ``path``."""
    return atomic.torch_save(decoder_state(sam), path)


def holds(path: Path, state: dict[str, torch.Tensor]) -> bool:
    """Whether the torch file ``path`` holds exactly ``state`` (read memory-mapped: no second copy in memory)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: not the same file, whatever it holds
        return False
    return saved.keys() == state.keys() and differing_key(saved, state) is None


def export_run(sam: Sam, export_dir: Path, *, model_type: str, replace: bool = True) -> tuple[Path, Path]:
    """Both exports of a fine-tuned ``sam`` into ``export_dir`` (``export_names``; HQ mode when its decoder is
    HQ-SAM's), the full file checked against the model.

    ``replace=False`` (the export CLI): a file already there that holds the same tensors is kept as is; one that
    holds others is never overwritten (``SamlitError`` naming it, before anything is written)."""
    hq = is_hq(sam.mask_decoder)
    full, decoder = (export_dir / name for name in export_names(model_type=model_type, hq=hq))
    todo = {full: stock_state_dict(sam), decoder: decoder_state(sam)}
    if not replace:
        for path, state in list(todo.items()):
            if path.exists():
                if not holds(path, state):
                    raise SamlitError(
                        f"{path} already exists and holds other weights (an earlier export?); it is not "
                        "overwritten: pass --out <another folder>, or move it"
                    )
                del todo[path]
    if full in todo:
        export_sam(sam, full)
        verify_export(sam, full, model_type=model_type, hq=hq)
    if decoder in todo:
        export_decoder(sam, decoder)
    return full, decoder


def export_adapters(sam: Sam, path: Path | str, *, spec: LoraSpec, model_type: str) -> Path:
    """The unmerged LoRA adapters (``samlit.model.lora.adapter_state``) as safetensors, with the settings that made
    them in its metadata (``adapter_metadata``), atomically to ``path``: for users who stack or swap adapters."""
    from safetensors.torch import save

    blob = save(adapter_state(sam), metadata=adapter_metadata(spec, model_type=model_type))
    return atomic.write_bytes(Path(path), blob)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlit.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a train.py run dir, or a .ckpt of one")
    parser.add_argument("--weights", help="base SAM weights (default: the run's model.weights)")
    parser.add_argument("--out", type=Path, help="output folder (default: <run dir>/export)")
    parser.add_argument("--onnx", action="store_true", help="also write sam_<model>_decoder.onnx (labeling tools)")
    args = parser.parse_args(argv)
    try:
        if args.onnx:
            require_onnx()
        checkpoint, run_dir = rundir.run_checkpoint(args.source)
        config = rundir.config_path(run_dir)
        if not config.is_file():
            raise SamlitError(f"{config} not found: {checkpoint} does not sit in a train.py run dir")
        model = OmegaConf.load(config).model
        hq = bool(model.get("hq", False))
        if hq and args.onnx:
            raise SamlitError(
                "--onnx is not available for an HQ run (model.hq=true): its decoder also takes the early ViT feature, "
                "which the SAM encoders of labeling tools do not output; export without --onnx"
            )
        spec = spec_from_config(OmegaConf.load(config).get("peft"))
        weights = args.weights or model.weights
        if spec.adapts_encoder and model.weights == "random":
            raise SamlitError(
                "the run used model.weights=random with encoder adapters: its base encoder exists only merged into "
                "its own full export (export/ of the run), which train.py wrote; there is nothing to rebuild it from"
            )
        if weights == "random":
            full_name = export_names(model_type=model.model_type, hq=hq)[0]
            raise SamlitError(
                f"the run used model.weights=random, so its frozen encoder exists only in its full export; "
                f"pass --weights {run_dir}/export/{full_name} (or a SAM file)"
            )
        base = {
            "model_type": model.model_type,
            "weights_dir": model.get("weights_dir"),
            "hq": hq,
            "hq_token_only": bool(model.get("hq_token_only", True)),
        }
        if spec.enabled:  # the run's adapters on its base weights, then merged into a plain model
            adapted = apply_lora(build_sam(weights=weights, **base), spec)
            load_trained(
                adapted,
                torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"],
                path=str(checkpoint),
            )
            sam = build_sam(weights="random", **base)
            sam.load_state_dict(stock_state_dict(adapted))
        else:
            adapted = sam = build_sam(weights=weights, decoder_weights=str(checkpoint), **base)
        out = args.out or rundir.export_dir(run_dir)
        full, decoder = export_run(sam, out, model_type=model.model_type, replace=False)
        print(f"{full}\n{decoder}")
        if spec.enabled:
            adapters = out / "adapters.safetensors"
            if not adapters.exists():
                print(export_adapters(adapted, adapters, spec=spec, model_type=model.model_type))
        if args.onnx:
            onnx_path = out / f"sam_{model.model_type}_decoder.onnx"
            if onnx_path.exists():
                raise SamlitError(f"{onnx_path} already exists; it is not overwritten: pass --out <another folder>")
            onnx_path, figures = export_onnx(sam, onnx_path)
            print(onnx_path)
            print(onnx_report(figures))
    except SamlitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

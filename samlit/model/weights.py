"""SAM checkpoints: Meta's official files (URL, size, SHA-256; downloaded and verified) and strict,
``weights_only`` loads of plain, wrapped and Lightning files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from samlit.core.errors import SamlitError
from samlit.model.download import download

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything"


@dataclass(frozen=True)
class OfficialCheckpoint:
    filename: str
    num_bytes: int
    sha256: str
    base_url: str = BASE_URL

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.filename}"


OFFICIAL: dict[str, OfficialCheckpoint] = {
    "vit_b": OfficialCheckpoint(
        "sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": OfficialCheckpoint(
        "sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": OfficialCheckpoint(
        "sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}


def resolve_weights(*, model_type: str, weights: str, weights_dir: Path | str | None = None) -> Path | None:
    """``model.weights`` -> the file to load (None for ``random``); SamlitError if there is none.

    ``official`` downloads Meta's checkpoint into ``weights_dir`` (SHA-256 verified; a verified file there is
    reused without network access).
    """
    if weights == "random":
        return None
    if weights == "official":
        if model_type not in OFFICIAL:
            raise SamlitError(
                f"model.weights=official: there are no official weights for model={model_type}; use 'random' or a path"
            )
        if weights_dir is None:
            raise SamlitError("model.weights=official needs model.weights_dir (paths.weights_dir) to download into")
        ckpt = OFFICIAL[model_type]
        return download(url=ckpt.url, dest=Path(weights_dir).expanduser() / ckpt.filename, sha256=ckpt.sha256)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SamlitError(f"model.weights={weights}: no such file; pass a SAM .pth, 'random' or 'official'")
    return path


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, problem: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)``; a mismatch is a one-line SamlitError:
    ``<problem>: <torch's first detail line>``."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise SamlitError(f"{problem}: {first}") from None


PREFIXES = ("", "sam.", "model.", "module.", "model.sam.", "net.")  # how LightningModules name their SAM
WRAPPERS = ("state_dict", "model")  # Lightning .ckpt, and {"model": ...} files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read SAM weights with ``weights_only=True``, as stock key names (``mask_decoder.…``).

    Accepts a plain state_dict, a ``{"model": ...}`` or ``{"state_dict": ...}`` wrapper and a Lightning
    ``.ckpt`` (the module's attribute prefix, e.g. ``sam.``, is stripped). Nothing in the file is executed.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types, often with multi-line messages
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise SamlitError(f"{path} is not a readable weights-only torch file: {reason}") from None
    if isinstance(obj, dict):
        wrapper = next((k for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        obj = obj[wrapper] if wrapper else obj
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SamlitError(f"{path} is not SAM weights (a dict of tensors, possibly under 'model' or 'state_dict')")
    if any(".lora_" in key for key in obj):
        raise SamlitError(
            f"{path} holds LoRA adapters (a checkpoint of a peft=... run): pass that run's merged export instead, "
            "export/sam_<model>_finetuned.pth as model.weights= (or export/sam_<model>_decoder.pth as "
            "model.decoder_weights= after decoder adapters alone)"
        )
    for prefix in PREFIXES:
        if any(key.startswith(f"{prefix}mask_decoder.") for key in obj):
            return {key[len(prefix) :]: value for key, value in obj.items() if key.startswith(prefix)}
    raise SamlitError(f"{path} holds no SAM mask_decoder weights (keys like {next(iter(obj))!r})")


def is_decoder_only(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a samlit checkpoint or decoder export: mask decoder weights and no image encoder."""
    return not any(key.startswith("image_encoder.") for key in state_dict)


def decoder_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``mask_decoder.`` entries of a SAM state_dict, without the prefix (``MaskDecoder.load_state_dict``)."""
    return {k.removeprefix("mask_decoder."): v for k, v in state_dict.items() if k.startswith("mask_decoder.")}

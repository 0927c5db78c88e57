"""SAM checkpoints: Meta's official files (URL, size, SHA-256) and strict, ``weights_only`` loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from samlit.errors import SamlitError

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything"


@dataclass(frozen=True)
class OfficialCheckpoint:
    filename: str
    num_bytes: int
    sha256: str

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.filename}"


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


def resolve_weights(*, model_type: str, weights: str) -> Path | None:
    """``model.weights`` -> the file to load (None for ``random``); SamlitError if there is none."""
    if weights == "random":
        return None
    if weights == "official":
        raise SamlitError(_official_not_yet(model_type))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SamlitError(f"model.weights={weights}: no such file; pass a SAM .pth, 'random' or 'official'")
    return path


def load_strict(sam: Sam, state_dict: dict[str, torch.Tensor], *, path: Path, model_type: str) -> None:
    """``sam.load_state_dict(state_dict, strict=True)``; a mismatch is a one-line SamlitError naming ``path``."""
    try:
        sam.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise SamlitError(f"model.weights={path} does not fit model={model_type}: {first}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a SAM state_dict (plain tensors, stock key names) with ``weights_only=True``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types, often with multi-line messages
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise SamlitError(f"model.weights={path} is not a readable weights-only torch file: {reason}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        raise SamlitError(
            f"model.weights={path} is a Lightning checkpoint; use the exported "
            "export/sam_<model>_finetuned.pth of the run instead"
        )
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SamlitError(f"model.weights={path} is not a SAM state_dict (a dict of tensors)")
    return obj


def _official_not_yet(model_type: str) -> str:
    if model_type not in OFFICIAL:
        return f"model.weights=official: there are no official weights for model={model_type}; use 'random' or a path"
    ckpt = OFFICIAL[model_type]
    return (
        f"model.weights=official: automatic download is not implemented yet; download {ckpt.url} "
        f"(sha256 {ckpt.sha256[:12]}...) by hand and pass model.weights=/path/to/{ckpt.filename}"
    )

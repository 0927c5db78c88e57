"""``python predict.py``: stamp masks for box prompts on new images, with any SAM weights (Meta's, a run's
export, or official weights + ``model.decoder_weights``).

    python predict.py model=vit_b model.weights=<pth> image=scan.png box=[x0,y0,x1,y1]
    python predict.py ... image=scan.png box=[[x0,y0,x1,y1],[...]]
    python predict.py ... image=<folder> boxes=<boxes.json>        # {"scan.png": [[x0,y0,x1,y1], ...], ...}
    python predict.py ... data.crop=box data.crop_margin=0.1       # each box through its own crop

The frame (``data.crop``, ``data.crop_margin``, the keys train.py and eval.py take; ``crop=`` / ``crop_margin=``
also work) defaults to the one of the run that wrote the weights, else the whole image.

Writes ``<stem>_mask_<i>.png`` (255 = stamp, the image's size), ``<stem>_overlay.png`` (image, masks, boxes)
and ``predictions.json`` into the run dir (or ``output=``). The masks are what ``SamPredictor`` gives for the
same weights, image and box (``tests/run/test_predict.py`` checks it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from segment_anything.modeling import Sam

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.core.images import IMAGE_SUFFIXES, read_rgb, write_png
from samlit.data.frame import check_crop, crop_box, paste, to_sam_frame
from samlit.data.prompts import clip_boxes
from samlit.data.sample import InstanceSample
from samlit.model.hq import sam_token_while_fresh
from samlit.model.sam import decode_prompts, encode_features
from samlit.run.figures import PRED_COLOUR, overlay
from samlit.run.rundir import follow_run_model, run_frame

log = logging.getLogger(__name__)
FRAME_KEYS = ("crop", "crop_margin")


@torch.no_grad()
def predict_masks(
    sam: Sam,
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    mask_threshold: float = 0.0,
    crop: str = "none",
    crop_margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks for ``boxes`` (N, 4) xyxy pixels on ``image`` (H, W, 3) uint8 RGB: the path training uses
    (``to_sam_frame``, frozen encoder, decoder, ``postprocess_masks``). With ``crop="box"`` each box is seen
    through its own crop (one encoder pass per box) and its mask pasted back. Returns (N, H, W) bool and the
    decoder's predicted IoU (N,)."""
    check_crop(crop, crop_margin)
    if crop == "none":
        return _predict_frame(sam, image, boxes, mask_threshold=mask_threshold)
    masks, scores = [], []
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        window = crop_box(box, margin=crop_margin, image_size=image.shape[:2])
        x0, y0, x1, y1 = window
        shifted = (box - np.array([x0, y0, x0, y0], np.float32))[None]
        mask, score = _predict_frame(sam, image[y0:y1, x0:x1], shifted, mask_threshold=mask_threshold)
        masks.append(paste(mask, window, image_size=image.shape[:2]))
        scores.append(score)
    return np.concatenate(masks), np.concatenate(scores)


def _predict_frame(
    sam: Sam, image: np.ndarray, boxes: np.ndarray, *, mask_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``predict_masks`` with ``image`` (a page or a crop) as SAM's frame."""
    device = next(sam.parameters()).device
    height, width = image.shape[:2]
    sample = InstanceSample(key="", image=image, masks=np.zeros((0, height, width), bool), boxes=boxes)
    group = to_sam_frame(sample, boxes=np.asarray(boxes, np.float32))
    features = encode_features(sam, group["image"])  # HQ mode: with the early ViT feature
    logits, iou = decode_prompts(sam, boxes=group["boxes"].to(device), **features)
    full = sam.postprocess_masks(logits[:, None], group["input_size"], group["original_size"])[:, 0]
    return (full > mask_threshold).cpu().numpy(), iou.cpu().numpy()


def checked_boxes(boxes: Any, *, image_size: tuple[int, int], source: str) -> np.ndarray:
    """(N, 4) float boxes inside the image: boxes reaching outside are clipped with a warning; a box with no
    area inside the image, a box that is not four finite numbers (``"x0,y0,x1,y1"`` text is read too) is a
    SamlitError."""
    usage = f"{source}: a box is [x0,y0,x1,y1] (four finite numbers, pixels) or a list of them, got {boxes!r}"
    if isinstance(boxes, str):
        boxes = boxes.strip().strip("[]").split(",")
    try:
        array = np.asarray(boxes, dtype=np.float32)
    except (TypeError, ValueError):
        raise SamlitError(usage) from None
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0 or not np.isfinite(array).all():
        raise SamlitError(usage)
    height, width = image_size
    clipped = clip_boxes(array, image_size=image_size)
    for before, after in zip(array, clipped, strict=True):
        if after[2] <= after[0] or after[3] <= after[1]:
            raise SamlitError(f"{source}: box {before.tolist()} has no area inside the {width}x{height} image")
        if not np.array_equal(before, after):
            log.warning("%s: box %s reaches outside the image; clipped to %s", source, before.tolist(), after.tolist())
    return clipped


def jobs(cfg: DictConfig) -> list[tuple[Path, Any]]:
    """(image path, boxes) pairs from ``image`` + ``box`` or ``image`` (folder) + ``boxes`` (JSON file)."""
    image = Path(str(cfg.image)).expanduser()
    if image.is_file():
        if cfg.box is None:
            raise SamlitError(f"image={image}: pass box=[x0,y0,x1,y1] (or a list of boxes)")
        return [(image, OmegaConf.to_container(cfg.box) if OmegaConf.is_config(cfg.box) else cfg.box)]
    if not image.is_dir():
        raise SamlitError(f"image={image}: no such file or folder")
    if cfg.boxes is None or not Path(cfg.boxes).is_file():
        raise SamlitError(f"image={image} is a folder: pass boxes=<JSON file> mapping image names to box lists")
    try:
        table = json.loads(Path(cfg.boxes).read_text())
    except ValueError as error:
        raise SamlitError(f"boxes={cfg.boxes}: not valid JSON ({error})") from None
    files = sorted(p for p in image.iterdir() if p.is_file())
    found = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.name in table]
    if not found:
        raise SamlitError(f"boxes={cfg.boxes} names no image of {image}")
    unused = [p.name for p in files if p not in found]
    if unused:
        shown = ", ".join(unused[:5]) + (", ..." if len(unused) > 5 else "")
        log.warning("%d files of %s are not predicted (not an image, or not in boxes=%s): %s",
                    len(unused), image, cfg.boxes, shown)  # fmt: skip
    missing = sorted(set(table) - {p.name for p in found})
    if missing:
        log.warning("boxes=%s names %d images that are not in %s: %s",
                    cfg.boxes, len(missing), image, ", ".join(missing[:5]))  # fmt: skip
    return [(path, table[path.name]) for path in found]


def check_outputs(todo: list[tuple[Path, np.ndarray]], out_dir: Path) -> None:
    """One line, before any work, if two images share a stem (their ``<stem>_mask_<i>.png`` would overwrite each
    other) or ``out_dir`` already holds a file this run would write (an earlier run's: nothing is overwritten)."""
    stems: dict[str, Path] = {}
    planned = [out_dir / "predictions.json"]
    for path, boxes in todo:
        if path.stem in stems:
            raise SamlitError(
                f"{stems[path.stem]} and {path} share the name {path.stem!r}: their masks would overwrite each "
                "other; rename one, or predict them in two runs"
            )
        stems[path.stem] = path
        planned += [
            out_dir / f"{path.stem}_{kind}.png" for kind in ("overlay", *(f"mask_{i}" for i in range(len(boxes))))
        ]
    existing = [p for p in planned if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise SamlitError(
            f"output={out_dir} already holds {existing[0]}{more} that this run would write: pass another output= "
            "(or leave it unset: a new run dir), or move them"
        )


def given_frame(cfg: DictConfig) -> dict[str, Any]:
    """``data.crop`` / ``data.crop_margin`` as given (``None``: not given). ``crop=`` / ``crop_margin=`` are older
    spellings of the same keys; both spellings with different values is a one-line SamlitError."""
    given = {}
    for key in FRAME_KEYS:
        documented, alias = OmegaConf.select(cfg, f"data.{key}"), cfg.get(key)
        if documented is not None and alias is not None and documented != alias:
            raise SamlitError(
                f"data.{key}={documented} and {key}={alias} disagree ({key}= is the older spelling of data.{key}=): "
                f"pass data.{key}= alone"
            )
        given[key] = alias if documented is None else documented
    return given


def chosen_frame(cfg: DictConfig) -> dict[str, Any]:
    """``data.crop`` / ``data.crop_margin`` as given, else the setting of the run whose weights these are, else the
    page (margin 0.1)."""
    given = given_frame(cfg)
    run = run_frame(cfg.model.get("decoder_weights"), cfg.model.get("weights")) or {}
    crop = given["crop"] if given["crop"] is not None else run.get("crop", "none")
    margin = given["crop_margin"] if given["crop_margin"] is not None else run.get("crop_margin", 0.1)
    check_crop(crop, margin)
    return {"crop": crop, "crop_margin": margin}


def main(cfg: DictConfig) -> list[dict[str, Any]]:
    out_dir = Path(cfg.output or cfg.paths.output_dir).expanduser()
    todo = [  # every input checked before the model is built
        (path, checked_boxes(raw, image_size=read_rgb(path).shape[:2], source=str(path))) for path, raw in jobs(cfg)
    ]
    check_outputs(todo, out_dir)
    frame = chosen_frame(cfg)
    log.info("frame: %s", f"box crops (margin {frame['crop_margin']})" if frame["crop"] == "box" else "whole image")
    follow_run_model(cfg.model, given=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [])
    sam = instantiate(cfg.model)
    if torch.cuda.is_available() and cfg.device != "cpu":
        sam = sam.to("cuda")
    with sam_token_while_fresh(sam.mask_decoder) as sam_decoder:
        if sam_decoder:
            log.warning("model.hq=true without HQ weights: the HQ token is untrained, so SAM's own decoder predicts")
        results = predict_all(sam, todo, out_dir=out_dir, mask_threshold=cfg.mask_threshold, frame=frame)
    atomic.write_text(out_dir / "predictions.json", json.dumps(results, indent=2) + "\n")
    print(f"{len(results)} mask(s) for {len(todo)} image(s) in {out_dir}")
    return results


def predict_all(
    sam: Sam, todo: list[tuple[Path, np.ndarray]], *, out_dir: Path, mask_threshold: float, frame: dict[str, Any]
) -> list[dict[str, Any]]:
    """Masks and overlays of every (image, boxes) of ``todo`` written to ``out_dir``; the ``predictions.json`` rows."""
    results = []
    for path, boxes in todo:
        image = read_rgb(path)
        masks, scores = predict_masks(sam, image, boxes, mask_threshold=mask_threshold, **frame)
        for i, (mask, box, score) in enumerate(zip(masks, boxes, scores, strict=True)):
            mask_path = write_png(out_dir / f"{path.stem}_mask_{i}.png", mask.astype(np.uint8) * 255)
            results.append(
                {"image": str(path), "box": box.tolist(), "mask": str(mask_path), "predicted_iou": float(score)}
            )
        write_png(out_dir / f"{path.stem}_overlay.png", overlay(image, masks, PRED_COLOUR, path.name, boxes))
        log.info("%s: %d mask(s) -> %s", path.name, len(masks), out_dir)
    return results

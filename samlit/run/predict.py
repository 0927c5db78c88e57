"""``python predict.py``: stamp masks for prompts on new images (boxes, clicks, an earlier mask), with any SAM
weights (Meta's, a run's export, or official weights + ``model.decoder_weights``).

    python predict.py model=vit_b model.weights=<pth> image=scan.png box=[x0,y0,x1,y1]
    python predict.py ... image=scan.png box=[[x0,y0,x1,y1],[...]]
    python predict.py ... image=scan.png box=[x0,y0,x1,y1] points=[[x,y],[x,y]] labels=[1,0]   # box + clicks
    python predict.py ... image=scan.png box=[[...],[...]] points=[[[x,y]],[]] labels=[[1],[]]  # clicks per box
    python predict.py ... image=scan.png points=[[x,y]] labels=[1]                             # clicks alone
    python predict.py ... image=scan.png box=[...] points=[[x,y]] labels=[0] mask_input=<out>/scan_low_res_logits.npy
    python predict.py ... image=<folder> boxes=<boxes.json>        # {"scan.png": [[x0,y0,x1,y1], ...], ...}
    python predict.py ... image=<folder> boxes=<boxes.json> mask_input=<an earlier output folder>
    python predict.py ... data.crop=box data.crop_margin=0.1       # each box through its own crop

The prompts (boxes, clicks, an earlier mask), their frames and formats, and how bad ones are refused (one line,
before the model is built): ``samlit.run.prompt_input``. A corrective click: run with the box, then again with
the box, the click and ``mask_input=`` the first run's logits (the same boxes, order and frame).

The frame (``data.crop``, ``data.crop_margin``, the keys train.py and eval.py take; ``crop=`` / ``crop_margin=``
also work) defaults to the one of the run that wrote the weights, else the whole image.

Writes ``<stem>_mask_<i>.png`` (255 = stamp, the image's size), ``<stem>_low_res_logits.npy`` (the decoder's
logits, for a later ``mask_input=``), ``<stem>_overlay.png`` (image, masks, boxes, clicks: green positive, red
negative) and ``predictions.json`` (a row per instance: ``image``, ``box`` (null: points alone), ``points``,
``labels``, ``mask``, ``predicted_iou``, ``low_res_logits`` (the file; row ``instance`` of it) and ``crop_window``
(the crop those logits live in; null: the whole image)) into the run dir (or ``output=``); nothing is overwritten.
The masks are what stock ``SamPredictor.predict(point_coords, point_labels, box, mask_input,
multimask_output=False)`` gives for the same weights, image and prompts (with ``data.crop=box``: on each
instance's crop, pasted back; ``tests/run/test_predict.py`` checks both).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.core.images import IMAGE_SUFFIXES, read_rgb, write_png
from samlit.data.frame import CropBox, check_crop, crop_box, frame_image, paste
from samlit.model.hq import sam_token_while_fresh
from samlit.model.sam import decode_prompts, encode_features
from samlit.run.figures import PRED_COLOUR, overlay
from samlit.run.prompt_input import (
    INSTANCE_FORM,
    LOW_RES_SUFFIX,
    Given,
    Prompt,
    as_prompts,
    checked_prompts,
    mask_inputs,
)
from samlit.run.rundir import follow_run_model, run_frame

log = logging.getLogger(__name__)
FRAME_KEYS = ("crop", "crop_margin")
CLICK_COLOURS = {1: (0, 200, 0), 0: (230, 0, 0)}  # RGB: positive green, negative red (SAM's notebooks), white ring


@dataclass(frozen=True)
class Predicted:
    """``predict_prompts``' output for an image of N instances.

    Attributes:
        masks: (N, H, W) bool at the image's size.
        iou: (N,) float32, the decoder's predicted IoU.
        low_res_logits: (N, 256, 256) float32, the decoder's logits, row i in the frame ``windows[i]`` (what a
            later ``mask_input`` takes).
        windows: per instance its crop ``(x0, y0, x1, y1)`` in image pixels (``crop="box"``), or None (the whole
            image is the frame).
    """

    masks: np.ndarray
    iou: np.ndarray
    low_res_logits: np.ndarray
    windows: list[CropBox | None]


@torch.no_grad()
def predict_masks(
    sam: Sam,
    image: np.ndarray,
    boxes: Any = None,
    *,
    points: Any = None,
    labels: Any = None,
    mask_input: np.ndarray | torch.Tensor | None = None,
    mask_threshold: float = 0.0,
    crop: str = "none",
    crop_margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks for N instances' prompts on ``image`` (H, W, 3) uint8 RGB: the path training uses (SAM's resize, frozen
    encoder, ``decode_prompts``, ``postprocess_masks``), equal to stock ``SamPredictor.predict(point_coords,
    point_labels, box, mask_input, multimask_output=False)`` per instance.

    Args:
        boxes: (N, 4) xyxy pixels; None or None rows: instances prompted by points alone (``crop="none"`` only).
        points, labels: optional clicks in pixels, (N, P, 2) and (N, P) or per instance (P_i, 2) and (P_i,) arrays
            (``as_prompts``); label 1 positive, 0 negative.
        mask_input: optional (N, 256, 256) float low-res logits of an earlier prediction, row i in instance i's
            frame (the whole image; with ``crop="box"`` its crop), as ``predict_prompts`` returns them.
        crop: ``none`` (the image is SAM's frame) or ``box`` (each instance seen through the crop of its box with
            ``crop_margin``, one encoder pass per instance, its mask pasted back).

    Returns:
        (N, H, W) bool masks and the decoder's predicted IoU (N,).
    """
    predicted = predict_prompts(
        sam,
        image,
        as_prompts(boxes, points, labels),
        mask_input=mask_input,
        mask_threshold=mask_threshold,
        crop=crop,
        crop_margin=crop_margin,
    )
    return predicted.masks, predicted.iou


@torch.no_grad()
def predict_prompts(
    sam: Sam,
    image: np.ndarray,
    prompts: list[Prompt],
    *,
    mask_input: np.ndarray | torch.Tensor | None = None,
    mask_threshold: float = 0.0,
    crop: str = "none",
    crop_margin: float = 0.1,
) -> Predicted:
    """``predict_masks`` for ``Prompt`` s, with the low-res logits and each instance's frame.

    Raises:
        SamlitError: ``crop="box"`` and an instance without a box.
        ValueError: ``mask_input`` not (N, 256, 256) (or SamPredictor's (N, 1, 256, 256)).
    """
    check_crop(crop, crop_margin)
    logits_in = None
    if mask_input is not None:
        logits_in = torch.as_tensor(mask_input).detach().float().cpu()
        logits_in = logits_in[:, 0] if logits_in.ndim == 4 and logits_in.shape[1] == 1 else logits_in
        expected = (len(prompts), *sam.prompt_encoder.mask_input_size)
        if tuple(logits_in.shape) != expected:
            raise ValueError(f"mask_input is {tuple(mask_input.shape)}, not {expected} (one row per instance)")
    if not prompts:
        size = sam.prompt_encoder.mask_input_size
        empty = np.zeros((0, *image.shape[:2]), bool), np.zeros(0, np.float32), np.zeros((0, *size), np.float32)
        return Predicted(*empty, windows=[])
    if crop == "none":
        masks, iou, logits = _predict_frame(sam, image, prompts, mask_input=logits_in, mask_threshold=mask_threshold)
        return Predicted(masks=masks, iou=iou, low_res_logits=logits, windows=[None] * len(prompts))
    alone = [i for i, prompt in enumerate(prompts) if prompt.box is None]
    if alone:
        raise SamlitError(
            f"instance {alone[0]} has points but no box, and data.crop=box crops around each box: give it a box, or "
            "pass data.crop=none"
        )
    masks, ious, logits, windows = [], [], [], []
    for i, prompt in enumerate(prompts):
        window = crop_box(prompt.box, margin=crop_margin, image_size=image.shape[:2])
        x0, y0, x1, y1 = window
        origin = np.array([x0, y0], np.float32)
        beyond = (prompt.points < origin) | (prompt.points > np.array([x1, y1], np.float32))
        if beyond.any():
            log.warning(
                "instance %d: click %s lies outside its crop %s (data.crop=box): SAM sees it beyond the crop's edge",
                i, prompt.points[beyond.any(axis=1)][0].tolist(), list(window),
            )  # fmt: skip
        shifted = Prompt(box=prompt.box - np.tile(origin, 2), points=prompt.points - origin, labels=prompt.labels)
        mask, iou, logit = _predict_frame(
            sam,
            image[y0:y1, x0:x1],
            [shifted],
            mask_input=None if logits_in is None else logits_in[i : i + 1],
            mask_threshold=mask_threshold,
        )
        masks.append(paste(mask, window, image_size=image.shape[:2]))
        ious.append(iou)
        logits.append(logit)
        windows.append(window)
    return Predicted(
        masks=np.concatenate(masks), iou=np.concatenate(ious), low_res_logits=np.concatenate(logits), windows=windows
    )


def _predict_frame(
    sam: Sam, image: np.ndarray, prompts: list[Prompt], *, mask_input: torch.Tensor | None, mask_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``predict_prompts`` with ``image`` (a page or a crop) as SAM's frame: (N, H, W) bool masks, (N,) IoU and
    (N, 256, 256) low-res logits. Prompts go through the decoder together when they have the same kinds and number
    of tokens (box or not, P points): padding would add a token stock ``SamPredictor`` does not have."""
    device = next(sam.parameters()).device
    original_size = (int(image.shape[0]), int(image.shape[1]))
    target = sam.image_encoder.img_size
    pixels = frame_image(image, target_length=target)  # SamPredictor.set_image's resize
    input_size = (int(pixels.shape[1]), int(pixels.shape[2]))
    resize = ResizeLongestSide(target)  # the prompts' resize, as SamPredictor.predict does it
    features = encode_features(sam, pixels)  # HQ mode: with the early ViT feature
    groups: dict[tuple[bool, int], list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault((prompt.box is not None, len(prompt.points)), []).append(i)
    logits = torch.zeros(len(prompts), *sam.prompt_encoder.mask_input_size, device=device)
    iou = torch.zeros(len(prompts), device=device)
    for (has_box, count), rows in groups.items():
        chosen = [prompts[i] for i in rows]
        boxes = points = None
        if has_box:
            boxes = resize.apply_boxes(np.stack([p.box for p in chosen]), original_size)
            boxes = torch.as_tensor(boxes, dtype=torch.float, device=device)
        if count:
            coords = resize.apply_coords(np.stack([p.points for p in chosen]), original_size)
            tags = np.stack([p.labels for p in chosen])
            points = (torch.as_tensor(coords, dtype=torch.float, device=device), torch.as_tensor(tags, device=device))
        masks_in = None if mask_input is None else mask_input[rows].to(device)
        logits[rows], iou[rows] = decode_prompts(sam, boxes=boxes, points=points, mask_input=masks_in, **features)
    full = sam.postprocess_masks(logits[:, None], input_size, original_size)[:, 0]
    return (full > mask_threshold).cpu().numpy(), iou.cpu().numpy(), logits.float().cpu().numpy()


def jobs(cfg: DictConfig) -> list[tuple[Path, Any]]:
    """(image path, its prompts as given) pairs: ``image`` (file) + ``box`` / ``points`` / ``labels`` (a ``Given``),
    or ``image`` (folder) + ``boxes`` (JSON file: the image's entry)."""
    image = Path(str(cfg.image)).expanduser()
    given = Given.of(cfg)
    if image.is_file():
        if given.box is None and given.points is None and given.labels is None:
            raise SamlitError(
                f"image={image}: pass box=[x0,y0,x1,y1] (or a list of boxes) and/or clicks points=[[x,y],...] "
                "labels=[1,...]"
            )
        return [(image, given)]
    if not image.is_dir():
        raise SamlitError(f"image={image}: no such file or folder")
    if given.points is not None or given.labels is not None:
        raise SamlitError(
            f"image={image} is a folder: points= / labels= are for image=<file>; give each image's clicks in the "
            f'boxes= JSON: {{"scan.png": [{INSTANCE_FORM}, ...]}}'
        )
    if cfg.boxes is None or not Path(cfg.boxes).is_file():
        raise SamlitError(f"image={image} is a folder: pass boxes=<JSON file> mapping image names to box lists")
    try:
        table = json.loads(Path(cfg.boxes).read_text())
    except ValueError as error:
        raise SamlitError(f"boxes={cfg.boxes}: not valid JSON ({error})") from None
    if not isinstance(table, dict):
        raise SamlitError(f'boxes={cfg.boxes}: an object mapping image names to instances, e.g. {{"scan.png": [...]}}')
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


def check_outputs(todo: list[tuple[Path, Any]], out_dir: Path) -> None:
    """One line, before any work, if two images share a stem (their ``<stem>_mask_<i>.png`` would overwrite each
    other) or ``out_dir`` already holds a file this run would write (an earlier run's: nothing is overwritten)."""
    stems: dict[str, Path] = {}
    planned = [out_dir / "predictions.json"]
    for path, prompts in todo:
        if path.stem in stems:
            raise SamlitError(
                f"{stems[path.stem]} and {path} share the name {path.stem!r}: their masks would overwrite each "
                "other; rename one, or predict them in two runs"
            )
        stems[path.stem] = path
        planned += [
            out_dir / f"{path.stem}_{kind}.png" for kind in ("overlay", *(f"mask_{i}" for i in range(len(prompts))))
        ]
        planned.append(out_dir / f"{path.stem}{LOW_RES_SUFFIX}")
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
    todo = [(path, checked_prompts(path, raw, boxes_file=cfg.boxes)) for path, raw in jobs(cfg)]  # before the model
    frame = chosen_frame(cfg)
    if frame["crop"] == "box":
        for path, prompts in todo:
            alone = [i for i, p in enumerate(prompts) if p.box is None]
            if alone:
                raise SamlitError(
                    f"{path}: instance {alone[0]} has points but no box, and data.crop=box crops around each box: "
                    "give it a box, or pass data.crop=none"
                )
    logits_in = mask_inputs(cfg.get("mask_input"), todo)
    check_outputs(todo, out_dir)
    log.info("frame: %s", f"box crops (margin {frame['crop_margin']})" if frame["crop"] == "box" else "whole image")
    follow_run_model(cfg.model, given=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [])
    sam = instantiate(cfg.model)
    if torch.cuda.is_available() and cfg.device != "cpu":
        sam = sam.to("cuda")
    with sam_token_while_fresh(sam.mask_decoder) as sam_decoder:
        if sam_decoder:
            log.warning("model.hq=true without HQ weights: the HQ token is untrained, so SAM's own decoder predicts")
        results = predict_all(
            sam, todo, out_dir=out_dir, mask_threshold=cfg.mask_threshold, frame=frame, mask_inputs=logits_in
        )
    atomic.write_text(out_dir / "predictions.json", json.dumps(results, indent=2) + "\n")
    print(f"{len(results)} mask(s) for {len(todo)} image(s) in {out_dir}")
    return results


def predict_all(
    sam: Sam,
    todo: list[tuple[Path, list[Prompt]]],
    *,
    out_dir: Path,
    mask_threshold: float,
    frame: dict[str, Any],
    mask_inputs: list[np.ndarray | None] | None = None,
) -> list[dict[str, Any]]:
    """Masks, low-res logits and overlays of every (image, prompts) of ``todo`` written to ``out_dir`` (``mask_inputs``:
    per image its mask prompt or None); the ``predictions.json`` rows."""
    results = []
    for (path, prompts), logits_in in zip(todo, mask_inputs or [None] * len(todo), strict=True):
        image = read_rgb(path)
        predicted = predict_prompts(sam, image, prompts, mask_input=logits_in, mask_threshold=mask_threshold, **frame)
        buffer = io.BytesIO()
        np.save(buffer, predicted.low_res_logits.astype(np.float32))
        logits_path = atomic.write_bytes(out_dir / f"{path.stem}{LOW_RES_SUFFIX}", buffer.getvalue())
        rows = zip(prompts, predicted.masks, predicted.iou, predicted.windows, strict=True)
        for i, (prompt, mask, score, window) in enumerate(rows):
            mask_path = write_png(out_dir / f"{path.stem}_mask_{i}.png", mask.astype(np.uint8) * 255)
            results.append(
                {
                    "image": str(path),
                    "box": None if prompt.box is None else prompt.box.tolist(),
                    "points": prompt.points.tolist(),
                    "labels": prompt.labels.tolist(),
                    "mask": str(mask_path),
                    "predicted_iou": float(score),
                    "low_res_logits": str(logits_path),  # row i of it
                    "instance": i,
                    "crop_window": None if window is None else list(window),  # the frame of the logits: a crop
                }
            )
        boxes = np.array([p.box for p in prompts if p.box is not None], np.float32).reshape(-1, 4)
        picture = draw_clicks(overlay(image, predicted.masks, PRED_COLOUR, path.name, boxes), prompts)
        write_png(out_dir / f"{path.stem}_overlay.png", picture)
        log.info("%s: %d mask(s) -> %s", path.name, len(prompts), out_dir)
    return results


def draw_clicks(picture: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
    """``picture`` (H, W, 3) uint8 RGB with every prompt's clicks drawn: dots, green positive, red negative, ringed
    white (in place; returned)."""
    radius = max(3, picture.shape[1] // 200)
    for prompt in prompts:
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            centre = (round(float(x)), round(float(y)))
            cv2.circle(picture, centre, radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(picture, centre, radius, CLICK_COLOURS[int(label)], -1, cv2.LINE_AA)
    return picture

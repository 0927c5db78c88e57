"""``--onnx`` of ``python -m samlit.export``: write the prompt encoder + mask decoder as ONNX
(``samlit.model.onnx_decoder``), only once onnxruntime agrees with stock ``SamPredictor`` over the same model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from samlit.core import atomic
from samlit.core.errors import SamlitError
from samlit.model.onnx_decoder import INPUT_NAMES, onnx_decoder_bytes, onnx_inputs

ONNX_EXTRA = "--onnx needs the onnx extra: pip install -e '.[onnx]'"
# The check before an ONNX file is written: random (1, 256, 64, 64) embeddings, N(0, 1) like the encoder's
# LayerNorm'd output (the file holds no encoder), a landscape and a portrait image (the crop), boxes in each (alone,
# and the first ONNX_CHECK_CLICKS with clicks + a mask input: verify_onnx).
ONNX_CHECK_SIZES = ((600, 800), (900, 500))
ONNX_CHECK_BOXES = 8
ONNX_CHECK_CLICKS = 4  # of them also with a correction: a positive + a negative click, the box's mask as mask_input
MIN_MASK_AGREEMENT = 0.999  # logits within float noise of 0 may land on either side of the threshold
MAX_LOGIT_DIFF = 1e-2


def require_onnx() -> None:
    """SamlitError (one line) unless the ``onnx`` extra (onnx, onnxruntime) is installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise SamlitError(ONNX_EXTRA) from None


def predictor_on(sam: Sam, *, embedding: torch.Tensor, original_size: tuple[int, int]) -> SamPredictor:
    """A stock ``SamPredictor`` over ``sam`` in the state ``set_image`` leaves for an image of ``original_size``
    (h, w) whose (1, 256, H, W) ``embedding`` is given: no image encoder run."""
    predictor = SamPredictor(sam)
    predictor.original_size = tuple(original_size)
    predictor.input_size = predictor.transform.get_preprocess_shape(*original_size, sam.image_encoder.img_size)
    predictor.features = embedding.to(sam.device)
    predictor.is_image_set = True
    return predictor


def verify_onnx(
    sam: Sam,
    model: Path | str | bytes,
    *,
    embedding: torch.Tensor,
    boxes: np.ndarray | Sequence[Sequence[float]],
    original_size: tuple[int, int],
    clicks: int | None = None,
) -> dict[str, float]:
    """Run the ONNX ``model`` (a file or its bytes) with onnxruntime and stock ``SamPredictor`` over ``sam`` on the
    same prompts, and measure how they agree: each box alone (``predict(box=..., multimask_output=False)``) and
    the first ``clicks`` boxes also corrected: the box with clicks (``check_clicks``: a positive and a negative
    point) and its own low-res logits as the mask prompt (``predict(point_coords, point_labels, box, mask_input,
    multimask_output=False)``), the way a labeling tool sends a correction.

    Args:
        embedding: (1, 256, H, W) image embedding; ``boxes``: (N, 4) xyxy in the pixels of an image of
            ``original_size`` (h, w).
        clicks: how many of the boxes (the first) are also checked with a correction; None: every box, 0: none.

    Returns:
        ``mask_agreement``: fraction of the pixels, over every prompt's h x w, where both masks (logits > 0)
        agree; ``max_logit_diff``: largest |difference| of the full-size logits; ``max_iou_diff``: of the predicted
        IoU. RuntimeError if the file is no valid ONNX model or its inputs are not segment-anything's.
    """
    import onnx
    import onnxruntime

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise RuntimeError(f"onnx check failed: not a valid ONNX model: {error}") from error
    if tuple(i.name for i in proto.graph.input) != INPUT_NAMES:
        raise RuntimeError(f"onnx check failed: inputs {[i.name for i in proto.graph.input]}, not {INPUT_NAMES}")
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    predictor = predictor_on(sam, embedding=embedding, original_size=original_size)
    feed_embedding = embedding.detach().cpu().numpy()
    agree = total = 0
    max_logit_diff = max_iou_diff = 0.0

    def compare(**prompt: np.ndarray) -> np.ndarray:
        """One prompt through both; the counts above updated; SamPredictor's (1, 256, 256) low-res logits."""
        nonlocal agree, total, max_logit_diff, max_iou_diff
        logits, iou, low_res = predictor.predict(  # (1, h, w), (1,), (1, 256, 256)
            point_coords=prompt.get("points"),
            point_labels=prompt.get("labels"),
            box=prompt.get("box"),
            mask_input=prompt.get("mask_input"),
            multimask_output=False,
            return_logits=True,
        )
        feed = onnx_inputs(
            embedding=feed_embedding, original_size=original_size, image_size=sam.image_encoder.img_size, **prompt
        )
        onnx_logits, onnx_iou, _ = session.run(None, feed)  # (1, 1, h, w), (1, 1)
        agree += int(((onnx_logits[0] > sam.mask_threshold) == (logits > sam.mask_threshold)).sum())
        total += logits.size
        max_logit_diff = max(max_logit_diff, float(np.abs(onnx_logits[0] - logits).max()))
        max_iou_diff = max(max_iou_diff, float(np.abs(onnx_iou[0] - iou).max()))
        return low_res

    for i, box in enumerate(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)):
        low_res = compare(box=box)
        if (
            clicks is None or i < clicks
        ):  # a correction: clicks beside the box, the box's own prediction as the mask prompt
            points, labels = check_clicks(box)
            compare(box=box, points=points, labels=labels, mask_input=low_res)
    return {"mask_agreement": agree / total, "max_logit_diff": max_logit_diff, "max_iou_diff": max_iou_diff}


def check_clicks(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corrective clicks for ``box`` (4,) xyxy: a positive point at its centre and a negative one a fifth of the way
    in from its top-left corner; (2, 2) float32 xy in the box's pixels and (2,) int64 labels ``[1, 0]``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    points = np.array([[(x0 + x1) / 2, (y0 + y1) / 2], [x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0)]], np.float32)
    return points, np.array([1, 0], np.int64)


def check_boxes(original_size: tuple[int, int], *, count: int, generator: torch.Generator) -> np.ndarray:
    """(count, 4) random xyxy boxes, 5-60 % of each side, inside an image of ``original_size`` (h, w)."""
    h, w = original_size
    side = torch.tensor([w, h, w, h], dtype=torch.float32)
    size = torch.rand(count, 2, generator=generator) * 0.55 + 0.05
    start = torch.rand(count, 2, generator=generator) * (1 - size)
    return (torch.cat([start, start + size], dim=1) * side).numpy()


def export_onnx(sam: Sam, path: Path) -> tuple[Path, dict[str, float]]:
    """Write ``sam``'s prompt encoder + mask decoder to ``path`` as ONNX, atomically and only once onnxruntime
    agrees with ``SamPredictor`` on ``ONNX_CHECK_BOXES`` random boxes in each of ``ONNX_CHECK_SIZES``, each alone
    and ``ONNX_CHECK_CLICKS`` of them also with corrective clicks and a mask input (``verify_onnx``).

    Returns the path and the check's figures (``verify_onnx``'s, worst over the sizes); RuntimeError if they fail.
    """
    data = onnx_decoder_bytes(sam)
    generator = torch.Generator().manual_seed(0)
    grid = sam.prompt_encoder.image_embedding_size
    results = []
    for size in ONNX_CHECK_SIZES:
        embedding = torch.randn(1, sam.prompt_encoder.embed_dim, *grid, generator=generator)
        boxes = check_boxes(size, count=ONNX_CHECK_BOXES, generator=generator)
        results.append(
            verify_onnx(sam, data, embedding=embedding, boxes=boxes, original_size=size, clicks=ONNX_CHECK_CLICKS)
        )
    figures = {key: (min if key == "mask_agreement" else max)(r[key] for r in results) for key in results[0]}
    if figures["mask_agreement"] < MIN_MASK_AGREEMENT or figures["max_logit_diff"] > MAX_LOGIT_DIFF:
        raise RuntimeError(f"onnx check failed: onnxruntime and SamPredictor disagree ({figures}); {path} not written")
    return atomic.write_bytes(path, data), figures


def onnx_report(figures: dict[str, float]) -> str:
    """One line: how the written ONNX file agreed with ``SamPredictor`` (``export_onnx``'s check)."""
    sizes = " and ".join(f"{h}x{w}" for h, w in ONNX_CHECK_SIZES)
    return (
        f"onnx check vs SamPredictor(multimask_output=False), {ONNX_CHECK_BOXES} random boxes, {ONNX_CHECK_CLICKS} "
        f"of them also with a positive + a negative click and their mask as mask_input, on random embeddings of "
        f"{sizes} images: "
        f"mask agreement {figures['mask_agreement']:.6f}, "
        f"max logit diff {figures['max_logit_diff']:.2e}, max IoU diff {figures['max_iou_diff']:.2e}"
    )

"""The prompt encoder + mask decoder as segment-anything's ONNX model (``scripts/export_onnx_model.py``), same
inputs and outputs, so labeling tools (CVAT, AnyLabeling, the SAM web demo) run a samlit fine-tune unchanged.

Two changes to segment-anything's ``SamOnnxModel``:

- the single mask is always mask token 0, the one samlit trains (``multimask_output=False``). Stock
  ``SamOnnxModel(return_single_mask=True)`` picks among the mask tokens by number of points: with two points (a
  box as labels 2 and 3) it returns the best of the multimask tokens 1-3, a mask the fine-tune never trained;
- the crop of the padding follows ``orig_im_size`` for any aspect ratio (see ``mask_postprocessing``).

Inputs (``N`` points, dynamic; ``H x W`` the image-embedding grid, 64 x 64 for every samlit model):

- ``image_embeddings`` (1, 256, H, W) float: the image encoder's output.
- ``point_coords`` (1, N, 2) float: xy in the 1024-long-side input frame (``SamPredictor.transform.apply_coords``).
- ``point_labels`` (1, N) float: 1 foreground, 0 background, 2 / 3 box top-left / bottom-right, -1 padding.
- ``mask_input`` (1, 1, 4H, 4W) float and ``has_mask_input`` (1,) float: the mask prompt, low-res logits of an
  earlier prediction (its ``low_res_masks``, ``SamPredictor.predict``'s ``mask_input``) and 1, or zeros and 0.
- ``orig_im_size`` (2,) float: the original image's (h, w).

Outputs: ``masks`` (1, 1, h, w) logits at the original size (> 0 is the mask), ``iou_predictions`` (1, 1),
``low_res_masks`` (1, 1, 4H, 4W) logits.

A box alone is ``[[x0, y0], [x1, y1]]`` labelled ``[2, 3]`` with no padding point: SAM's prompt encoder pads
only prompts without a box, so this is exactly ``SamPredictor.predict(box=..., multimask_output=False)``.
Points alone get a padding point ``(0, 0)`` labelled -1 appended, as in segment-anything's ONNX notebook. Tools
that pad a box too (AnyLabeling) still get mask token 0, of a prompt with one more token than SamPredictor's.
Corrective clicks are points (labels 1 / 0) before the box's two corners, with the previous ``low_res_masks`` as
``mask_input``: ``SamPredictor.predict(point_coords, point_labels, box, mask_input, multimask_output=False)``
(``onnx_inputs`` builds that feed; ``samlit.run.onnx_export.verify_onnx`` checks it before a file is written).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel
from segment_anything.utils.transforms import ResizeLongestSide

INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks")
OPSET = 17  # segment-anything's export script; onnxruntime >= 1.14 runs it


class SamOnnxDecoder(SamOnnxModel):
    """``SamOnnxModel(return_single_mask=True)`` whose single mask is mask token 0 whatever the prompt.

    The prompt embedding and mask decoder are segment-anything's own; the mask choice and the crop differ.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__(sam, return_single_mask=True)

    def select_masks(
        self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 4, 4H, 4W) logits and (1, 4) IoU of all mask tokens -> those of token 0: (1, 1, 4H, 4W), (1, 1)."""
        return masks[:, :1], iou_preds[:, :1]

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """(1, 1, 4H, 4W) logits -> (1, 1, h, w) for ``orig_im_size`` (h, w), as ``Sam.postprocess_masks``: upscale
        to the input frame, crop its padding, resize. Stock code crops at ``int(...)`` bounds, which the tracer
        freezes to the export's example size (every other aspect ratio then gets a wrong crop); tensor bounds
        stay ops of the graph."""
        frame = (self.img_size, self.img_size)
        masks = F.interpolate(masks, size=frame, mode="bilinear", align_corners=False)
        unpadded = self.resize_longest_image_size(orig_im_size, self.img_size)
        masks = masks[..., : unpadded[0], : unpadded[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def example_inputs(sam: Sam, *, num_points: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the right shapes (in ``INPUT_NAMES`` order) for ``sam``, to trace the export with."""
    h, w = sam.prompt_encoder.image_embedding_size
    mask_h, mask_w = sam.prompt_encoder.mask_input_size
    return (
        torch.zeros(1, sam.prompt_encoder.embed_dim, h, w),
        torch.zeros(1, num_points, 2),
        torch.tensor([[2.0, 3.0] + [-1.0] * (num_points - 2)]),
        torch.zeros(1, 1, mask_h, mask_w),
        torch.zeros(1),
        torch.tensor([1500.0, 2250.0]),
    )


def onnx_decoder_bytes(sam: Sam) -> bytes:
    """``sam``'s prompt encoder + mask decoder as a serialized ``SamOnnxDecoder`` ONNX model (a few MB).

    Exporter: the TorchScript one (``dynamo=False``), the one segment-anything's script was written for: 0.7 s for
    the tiny model on 2 CPU cores, no onnxscript, and ``dynamic_axes`` give the point count its ``num_points`` axis.
    torch 2.14's default dynamo exporter (needs onnxscript) gets there only by falling back to strict
    ``torch.export`` after the data-dependent crop fails, in ~10 s.
    """
    model, modes = SamOnnxDecoder(sam), {module: module.training for module in sam.modules()}
    buffer = io.BytesIO()
    try:
        model.eval()
        with warnings.catch_warnings():  # the legacy exporter's deprecation; shape arithmetic traced as constants
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                tuple(x.to(sam.device) for x in example_inputs(sam)),
                buffer,
                dynamo=False,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
    finally:  # the caller's train / eval modes, module by module
        for module, training in modes.items():
            module.training = training
    return buffer.getvalue()


def onnx_inputs(
    *,
    embedding: np.ndarray,
    original_size: tuple[int, int],
    image_size: int,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The ONNX model's feed for one prompt, as labeling tools build it: what ``SamPredictor.predict(point_coords,
    point_labels, box, mask_input, multimask_output=False)`` takes, in the model's input names.

    Args:
        embedding: (1, 256, H, W) float32 image embedding.
        original_size: the image's (h, w); ``box`` (4,) xyxy and ``points`` (P, 2) xy are in its pixels,
            ``labels`` (P,) 1 positive / 0 negative. Points come first, then the box's corners (labels 2, 3), as
            SAM's prompt encoder orders them; without a box a padding point (0, 0) labelled -1 is appended.
        image_size: the model's input frame (``sam.image_encoder.img_size``, 1024).
        mask_input: optional low-res logits of an earlier prediction in this image's frame (SamPredictor's
            ``low_res_masks``), (4H, 4W), (1, 4H, 4W) or (1, 1, 4H, 4W) float; fed with ``has_mask_input`` 1.
            None: zeros and ``has_mask_input`` 0.

    Raises:
        ValueError: ``points`` without ``labels`` (or counts that differ), a ``mask_input`` of another size.
    """
    coords, tags = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    if points is not None:
        coords, tags = np.asarray(points, np.float32).reshape(-1, 2), np.asarray(labels, np.float32).reshape(-1)
        if len(coords) != len(tags):
            raise ValueError(f"{len(coords)} points but {len(tags)} labels: one label (1 / 0) per point")
    if box is not None:
        coords = np.concatenate([coords, np.asarray(box, np.float32).reshape(2, 2)])
        tags = np.concatenate([tags, np.array([2.0, 3.0], np.float32)])
    else:  # SAM's prompt encoder pads point prompts that come without a box
        coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
        tags = np.concatenate([tags, np.array([-1.0], np.float32)])
    coords = ResizeLongestSide(image_size).apply_coords(coords, original_size).astype(np.float32)
    mask_h, mask_w = (4 * s for s in embedding.shape[-2:])
    if mask_input is None:
        mask, has_mask = np.zeros((1, 1, mask_h, mask_w), np.float32), np.zeros(1, np.float32)
    else:
        mask = np.asarray(mask_input, np.float32)
        if mask.shape[-2:] != (mask_h, mask_w) or mask.size != mask_h * mask_w:
            raise ValueError(f"mask_input is {mask.shape}, not ({mask_h}, {mask_w}) low-res logits of one prompt")
        mask, has_mask = mask.reshape(1, 1, mask_h, mask_w), np.ones(1, np.float32)
    return {
        "image_embeddings": np.asarray(embedding, np.float32),
        "point_coords": coords[None],
        "point_labels": tags[None],
        "mask_input": mask,
        "has_mask_input": has_mask,
        "orig_im_size": np.array(original_size, np.float32),
    }

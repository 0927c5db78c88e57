"""``SamFineTuner``: train SAM's mask decoder on box prompts; image and prompt encoders stay frozen.

A batch is a list of per-image groups (see ``samlit.data.transforms.to_sam_frame``). Each group's image
embedding (1, 256, 64, 64) comes from the ``EmbeddingCache`` (the frozen encoder runs once per image and
augmentation view, across runs with ``cache=disk``); its N box prompts go through the decoder together
(SAM's decoder repeats the one embedding per prompt), so images are never mixed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.segmentation import DiceScore, MeanIoU

from samlit.cache import EmbeddingCache, encoder_fingerprint
from samlit.errors import SamlitError
from samlit.losses import iou_head_loss
from samlit.sam import decode_prompts, detect_model_type, encode_image

Group = dict[str, Any]
FROZEN_PREFIXES = ("sam.image_encoder.", "sam.prompt_encoder.")


def mask_metrics(stage: str) -> MetricCollection:
    """Per-mask IoU and Dice, averaged over masks (not pooled over pixels), logged as ``<stage>/iou|dice``."""
    return MetricCollection(
        {
            "iou": MeanIoU(num_classes=1, include_background=True, input_format="one-hot"),
            "dice": DiceScore(num_classes=1, include_background=True, input_format="one-hot", average="micro"),
        },
        prefix=f"{stage}/",
    )


class SamFineTuner(L.LightningModule):
    """Fine-tune ``sam.mask_decoder``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (see ``samlit.sam.build_sam``).
        loss: mask loss on logits, ``loss(logits (N, h, w), target (N, h, w)) -> scalar`` (``samlit.losses``).
        optimizer: partial optimizer, called with the decoder's parameters only.
        scheduler: optional partial LR scheduler, called with the optimizer; stepped per epoch on ``val/iou``.
        loss_frame: ``low`` = loss on the decoder's 256 x 256 logits vs area-pooled targets (fast);
            ``full`` = logits upsampled to the original image (``Sam.postprocess_masks``) vs the full-res masks.
        iou_head_weight: weight of the MSE between SAM's IoU prediction and the mask's real IoU (0 = off).
        mask_threshold: logit threshold for binary masks (SAM's is 0.0).
        keep_test_predictions: how many test images keep their predicted masks for the report's overlays.
        keep_val_predictions: how many val images (the same ones every epoch) keep their predicted masks for the
            dashboards' overlays (``samlit.dashboard.ValOverlays``).
        embeddings: where image embeddings come from (default: an in-memory ``EmbeddingCache``).

    ``train/iou|dice`` are measured in the decoder's 256 x 256 frame (cheap, every step); ``val/`` and ``test/``
    metrics at each image's original resolution.
    """

    def __init__(
        self,
        *,
        sam: Sam,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss_frame: str = "low",
        iou_head_weight: float = 1.0,
        mask_threshold: float = 0.0,
        keep_test_predictions: int = 4,
        keep_val_predictions: int = 2,
        embeddings: EmbeddingCache | None = None,
    ) -> None:
        super().__init__()
        if loss_frame not in ("low", "full"):
            raise SamlitError(f"module.loss_frame={loss_frame!r} must be 'low' or 'full'")
        self.save_hyperparameters(ignore=["sam", "loss", "optimizer", "scheduler", "embeddings"], logger=False)
        self.sam = sam
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.embeddings = embeddings if embeddings is not None else EmbeddingCache(mode="memory")
        self._fingerprints: dict[str, str] = {}
        for frozen in (sam.image_encoder, sam.prompt_encoder):
            frozen.requires_grad_(False)
        sam.mask_decoder.requires_grad_(True)
        self.train_metrics = mask_metrics("train")
        self.val_metrics = mask_metrics("val")
        self.test_metrics = mask_metrics("test")
        self.test_masks = SumMetric()
        # Under DDP each rank sees its share of the val/test scans; these lists are gathered at each epoch's end,
        # so every rank holds all of them, sorted by scan key.
        self.test_predictions: list[dict[str, Any]] = []  # key, masks (N, H, W) bool, pred (N, H, W) bool
        self.test_scores: list[dict[str, Any]] = []  # per test image: key, masks, mean per-mask IoU and Dice
        self.val_predictions: list[dict[str, Any]] = []  # key, pred (N, H, W) bool

    def train(self, mode: bool = True) -> SamFineTuner:
        """Only the decoder ever switches to train mode; the frozen encoders stay in eval mode."""
        super().train(mode)
        self.sam.image_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self

    def encoder_fingerprint(self) -> str:
        """The cache's key for this encoder: its weights, SAM's preprocessing and the autocast dtype in force."""
        device = self.device.type
        autocast = str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else "off"
        if autocast not in self._fingerprints:
            context = {
                "model_type": detect_model_type(self.sam.state_dict()) or type(self.sam.image_encoder).__name__,
                "img_size": self.sam.image_encoder.img_size,
                "pixel_mean": self.sam.pixel_mean.flatten().tolist(),
                "pixel_std": self.sam.pixel_std.flatten().tolist(),
                "autocast": autocast,
            }
            fingerprint = encoder_fingerprint(self.sam.image_encoder, **context)
            self.embeddings.describe(fingerprint, **context)
            self._fingerprints[autocast] = fingerprint
        return self._fingerprints[autocast]

    def image_embedding(self, group: Group) -> torch.Tensor:
        """(1, 256, 64, 64) embedding of ``group["image"]`` (3, h, w) uint8: from the cache, or the encoder once."""
        image = group["image"]

        @torch.no_grad()
        def encode() -> torch.Tensor:
            return encode_image(self.sam, image)

        embedding = self.embeddings.get(fingerprint=self.encoder_fingerprint(), image=image, compute=encode)
        return embedding.to(self.device)

    def forward(self, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one image's box prompts ``group["boxes"]`` (N, 4) (SAM frame), with its point prompts
        ``group["point_coords"]`` (N, P, 2) and ``group["point_labels"]`` (N, P) when the group has them.

        Returns:
            low-res mask logits (N, 256, 256) and predicted IoU (N,).
        """
        points = (group["point_coords"], group["point_labels"]) if "point_coords" in group else None
        return decode_prompts(self.sam, embedding=self.image_embedding(group), boxes=group["boxes"], points=points)

    def full_res(self, logits: torch.Tensor, group: Group) -> torch.Tensor:
        """(N, 256, 256) low-res logits -> (N, H, W) logits at the image's original size."""
        return self.sam.postprocess_masks(logits[:, None], group["input_size"], group["original_size"])[:, 0]

    def model_step(self, batch: list[Group], metrics: MetricCollection) -> torch.Tensor | None:
        """Loss over every mask of the batch (mean over masks) and metric updates; shared by all stages."""
        groups = [g for g in batch if len(g["boxes"]) > 0]
        num_masks = sum(len(g["boxes"]) for g in groups)
        if num_masks == 0:
            return None
        total = torch.zeros((), device=self.device)
        training = metrics is self.train_metrics
        for group in groups:
            low_res, iou_pred = self(group)
            full = None if training and self.hparams.loss_frame == "low" else self.full_res(low_res, group)
            if self.hparams.loss_frame == "low":
                logits, target = low_res, group["low_res_masks"]
            else:
                logits, target = full, group["masks"].float()
            loss = self.loss(logits, target)
            if self.hparams.iou_head_weight > 0:
                loss = loss + self.hparams.iou_head_weight * iou_head_loss(iou_pred, logits, target)
            total = total + loss * len(low_res) / num_masks
            if training:  # in the decoder's frame: upsampling every step to full size would double the step
                pred, truth = low_res.detach() > self.hparams.mask_threshold, group["low_res_masks"] > 0.5
            else:
                pred, truth = full.detach() > self.hparams.mask_threshold, group["masks"]
            metrics.update(pred[:, None].long(), truth[:, None].long())
            if metrics is self.test_metrics:
                self.test_masks.update(len(low_res))
                if len(self.test_predictions) < self.hparams.keep_test_predictions:
                    self.test_predictions.append(
                        {"key": group["key"], "masks": group["masks"].cpu(), "pred": pred.cpu()}
                    )
                self.test_scores.append(scores(group["key"], pred=pred, truth=group["masks"]))
            elif metrics is self.val_metrics and len(self.val_predictions) < self.hparams.keep_val_predictions:
                self.val_predictions.append({"key": group["key"], "pred": pred.cpu()})
        return total

    def training_step(self, batch: list[Group], batch_idx: int) -> torch.Tensor | None:
        loss = self.model_step(batch, self.train_metrics)
        if loss is not None and not torch.isfinite(loss):
            self._stop_on_non_finite(loss, batch, batch_idx)
        if loss is not None:
            self.log(
                "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True
            )
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[Group], batch_idx: int) -> None:
        loss = self.model_step(batch, self.val_metrics)
        if loss is not None:
            self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True)
            self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, batch_size=len(batch))

    def _stop_on_non_finite(self, loss: torch.Tensor, batch: list[Group], batch_idx: int) -> None:
        """Stop before the step: the weights are still the last finite ones, and checkpoints so far are kept."""
        checkpoints = getattr(self.trainer.checkpoint_callback, "dirpath", None) if self._trainer else None
        raise NonFiniteLoss(
            f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}: scans {', '.join(g['key'] for g in batch)}); stopped before that update. Checkpoints so "
            f"far are kept in {checkpoints}: lower optimizer.lr (or keep trainer.gradient_clip_val) and resume "
            "with ckpt_path=<last.ckpt>"
        )

    def on_validation_epoch_start(self) -> None:
        self.val_predictions = []

    def on_validation_epoch_end(self) -> None:
        self.val_predictions = gather_by_key(self.val_predictions)[: self.hparams.keep_val_predictions]

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []
        self.test_scores = []

    def on_test_epoch_end(self) -> None:
        self.test_predictions = gather_by_key(self.test_predictions)[: self.hparams.keep_test_predictions]
        self.test_scores = gather_by_key(self.test_scores)

    def test_step(self, batch: list[Group], batch_idx: int) -> None:
        loss = self.model_step(batch, self.test_metrics)
        if loss is not None:
            self.log("test/loss", loss, on_epoch=True, batch_size=len(batch), sync_dist=True)
            self.log_dict(self.test_metrics, on_epoch=True, batch_size=len(batch))
            self.log("test/n_masks", self.test_masks, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(params=self.trainable_parameters())
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/iou"}}

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters that train: the mask decoder's."""
        return [p for p in self.parameters() if p.requires_grad]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints keep only what trains (frozen encoder weights come back from ``model.weights``) plus the
        RNG states, so ``ckpt_path=`` resumes with the same shuffles, jitter and views as an unbroken run."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(FROZEN_PREFIXES)]:
            del state[key]
        checkpoint["samlit_rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "samlit_rng" in checkpoint and self._trainer is not None and self.trainer.state.fn == "fit":  # resume
            set_rng_state(checkpoint["samlit_rng"])
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(FROZEN_PREFIXES) and key not in state:
                state[key] = value


class NonFiniteLoss(SamlitError):
    """The training loss became NaN or infinite."""


def scores(key: str, *, pred: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    """One image's row: mean per-mask IoU and Dice of ``pred`` vs ``truth`` (N, H, W) bool."""
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    total = pred.flatten(1).sum(1).float() + truth.flatten(1).sum(1).float()
    iou = (inter / union.clamp(min=1)).mean().item()
    dice = (2 * inter / total.clamp(min=1)).mean().item()
    return {"key": key, "masks": len(truth), "iou": iou, "dice": dice}


def gather_by_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's ``rows`` (dicts with a ``key``; CPU tensors allowed), on every rank, sorted by key.

    Without DDP: ``rows`` sorted. A collective under DDP: every rank must call it.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part or []]
    return sorted(rows, key=lambda row: row["key"])


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) RNG states as plain lists and tensors (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1])],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), None))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

"""``SamFineTuner``: train SAM's mask decoder on box prompts; image and prompt encoders stay frozen.

A batch is a list of per-image groups (see ``samlit.data.dataset.StampDataset``). Each group's image embedding
(1, 256, 64, 64) comes from the ``EmbeddingCache`` by the group's ``image_digest`` (the frozen encoder runs once
per image and augmentation view, across runs with ``cache=disk``); a group from the item store carries no image,
and its pixels are read (``load_frame``) only when its embedding is missing. The decoder runs once per
image (SAM's way: one embedding repeated per prompt) or once per step for every prompt of the batch
(``decoder_batching``); the loss and metrics are the same either way.

Validation and test steps return what they predicted (``Prediction`` rows); callbacks
(``samlit.run.callbacks``) collect them for the report and the dashboards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from segment_anything.modeling import Sam
from torch import nn
from torchmetrics import SumMetric

from samlit.core.errors import SamlitError
from samlit.core.rng import rng_state, set_rng_state
from samlit.model.embeddings import EmbeddingCache
from samlit.model.metrics import stage_metrics
from samlit.model.sam import decode_prompt_batch, decode_prompts, encode_image

Group = dict[str, Any]
Prediction = dict[str, Any]  # key, pred (N, H, W) bool and the group's masks, image, pixel_boxes (CPU tensors)
FROZEN_PREFIXES = ("sam.image_encoder.", "sam.prompt_encoder.")
DECODER_BATCHING = ("auto", "per_image", "batched")


class SamFineTuner(L.LightningModule):
    """Fine-tune ``sam.mask_decoder``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (see ``samlit.model.sam.build_sam``).
        loss: ``loss(logits (N, h, w), target (N, h, w), iou_pred (N,)) -> scalar`` (``samlit.model.losses.SamLoss``).
        optimizer: partial optimizer, called with the decoder's parameters only.
        scheduler: optional partial LR scheduler, called with the optimizer; stepped per epoch on ``val/iou``.
        loss_frame: ``low`` = loss on the decoder's 256 x 256 logits vs area-pooled targets (fast);
            ``full`` = logits upsampled to the original image (``Sam.postprocess_masks``) vs the full-res masks.
        mask_threshold: logit threshold for binary masks (SAM's is 0.0).
        embeddings: where image embeddings come from (default: an in-memory ``EmbeddingCache``).
        load_frame: reads the frame image (3, h, w) uint8 of a group that carries none (an item-store item) from
            its ``source``; ``samlit.run.setup`` sets the datamodule's ``load_frame``.
        decoder_batching: ``per_image`` (a decoder call per image), ``batched`` (one call per step for all the
            batch's prompts) or ``auto``: batched on CUDA, per image elsewhere (``bench/decoder_step.py`` measures
            both; on a CPU one call per image is faster).

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
        mask_threshold: float = 0.0,
        embeddings: EmbeddingCache | None = None,
        decoder_batching: str = "auto",
        load_frame: Callable[[Any], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if loss_frame not in ("low", "full"):
            raise SamlitError(f"module.loss_frame={loss_frame!r} must be 'low' or 'full'")
        if decoder_batching not in DECODER_BATCHING:
            raise SamlitError(
                f"module.decoder_batching={decoder_batching!r} must be one of {', '.join(DECODER_BATCHING)}"
            )
        self.save_hyperparameters(
            ignore=["sam", "loss", "optimizer", "scheduler", "embeddings", "load_frame"], logger=False
        )
        self.load_frame = load_frame
        self.sam = sam
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.embeddings = embeddings if embeddings is not None else EmbeddingCache(mode="memory")
        for frozen in (sam.image_encoder, sam.prompt_encoder):
            frozen.requires_grad_(False)
        sam.mask_decoder.requires_grad_(True)
        self.train_metrics = stage_metrics("train")
        self.val_metrics = stage_metrics("val")
        self.test_metrics = stage_metrics("test")
        self.test_masks = SumMetric()

    def train(self, mode: bool = True) -> SamFineTuner:
        """Only the decoder ever switches to train mode; the frozen encoders stay in eval mode."""
        super().train(mode)
        self.sam.image_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self

    def image_embedding(self, group: Group) -> torch.Tensor:
        """(1, 256, 64, 64) embedding of the group's frame image: from the cache by ``group["image_digest"]`` (or
        by ``group["image"]`` (3, h, w) uint8), or the encoder once; a group without ``image`` has its pixels read
        (``load_frame(group["source"])``) only then."""

        @torch.no_grad()
        def encode() -> torch.Tensor:
            if "image" in group:
                return encode_image(self.sam, group["image"])
            if self.load_frame is None:
                raise SamlitError(f"{group['key']}: its embedding is not cached and no load_frame reads its image")
            return encode_image(self.sam, self.load_frame(group["source"]))

        embedding = self.embeddings.get(
            fingerprint=self.embeddings.fingerprint(self.sam),
            image=group.get("image"),
            digest=group.get("image_digest"),
            compute=encode,
        )
        return embedding.to(self.device, non_blocking=True)

    def forward(self, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one image's box prompts ``group["boxes"]`` (N, 4) (SAM frame), with its point prompts
        ``group["point_coords"]`` (N, P, 2) and ``group["point_labels"]`` (N, P) when the group has them.

        Returns:
            low-res mask logits (N, 256, 256) and predicted IoU (N,).
        """
        embedding = self.image_embedding(group)
        return decode_prompts(self.sam, embedding=embedding, boxes=group["boxes"], points=points_of(group))

    def decode_batch(self, groups: list[Group]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` of every group, as one decoder call per image or one for all prompts of the batch
        (``decoder_batching``); prompts with a different number of sparse tokens (points or not) go in separate
        calls."""
        batched = self.hparams.decoder_batching == "batched" or (
            self.hparams.decoder_batching == "auto" and self.device.type == "cuda"
        )
        if not batched or len(groups) == 1:
            return [self(group) for group in groups]
        prompts = [
            self.sam.prompt_encoder(points=points_of(g), boxes=g["boxes"], masks=None) for g in groups
        ]  # (N, T, 256), (N, 256, 64, 64) per group
        embeddings = [self.image_embedding(g) for g in groups]
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(groups)
        for tokens in sorted({sparse.shape[1] for sparse, _ in prompts}):
            members = [i for i, (sparse, _) in enumerate(prompts) if sparse.shape[1] == tokens]
            logits, iou = decode_prompt_batch(
                self.sam,
                embeddings=torch.cat([embeddings[i].expand(len(groups[i]["boxes"]), -1, -1, -1) for i in members]),
                sparse=torch.cat([prompts[i][0] for i in members]),
                dense=torch.cat([prompts[i][1] for i in members]),
            )
            sizes = [len(groups[i]["boxes"]) for i in members]
            for i, part_logits, part_iou in zip(members, logits.split(sizes), iou.split(sizes), strict=True):
                out[i] = (part_logits, part_iou)
        return out

    def full_res(self, logits: torch.Tensor, group: Group) -> torch.Tensor:
        """(N, 256, 256) low-res logits -> (N, H, W) logits at the image's original size."""
        return self.sam.postprocess_masks(logits[:, None], group["input_size"], group["original_size"])[:, 0]

    def model_step(self, batch: list[Group], stage: str) -> tuple[torch.Tensor | None, list[Prediction]]:
        """Loss over every mask of the batch (mean over masks) and ``stage``'s metric updates.

        Returns the loss (``None`` for a batch without masks) and, outside training, each group's prediction.
        """
        metrics = getattr(self, f"{stage}_metrics")
        groups = [g for g in batch if len(g["boxes"]) > 0]
        num_masks = sum(len(g["boxes"]) for g in groups)
        if num_masks == 0:
            return None, []
        total = torch.zeros((), device=self.device)
        predictions = []
        training = stage == "train"
        for group, (low_res_logits, iou_pred) in zip(groups, self.decode_batch(groups), strict=True):
            full = None if training and self.hparams.loss_frame == "low" else self.full_res(low_res_logits, group)
            if self.hparams.loss_frame == "low":
                logits, target = low_res_logits, group["low_res_targets"]
            else:
                logits, target = full, group["masks"].float()
            loss = self.loss(logits, target, iou_pred)
            total = total + loss * len(low_res_logits) / num_masks
            if training:  # in the decoder's frame: upsampling every step to full size would double the step
                pred, truth = low_res_logits.detach() > self.hparams.mask_threshold, group["low_res_targets"] > 0.5
            else:
                pred, truth = full.detach() > self.hparams.mask_threshold, group["masks"]
                predictions.append(prediction(group, pred))
            metrics.update(pred[:, None].long(), truth[:, None].long())
            if stage == "test":
                self.test_masks.update(len(low_res_logits))
        return total, predictions

    def training_step(self, batch: list[Group], batch_idx: int) -> torch.Tensor | None:
        loss, _ = self.model_step(batch, "train")
        if loss is not None and not torch.isfinite(loss):
            self._stop_on_non_finite(loss, batch, batch_idx)
        if loss is not None:
            self.log(
                "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True
            )
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[Group], batch_idx: int) -> list[Prediction]:
        loss, predictions = self.model_step(batch, "val")
        if loss is not None:
            self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True)
            self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return predictions

    def test_step(self, batch: list[Group], batch_idx: int) -> list[Prediction]:
        loss, predictions = self.model_step(batch, "test")
        if loss is not None:
            self.log("test/loss", loss, on_epoch=True, batch_size=len(batch), sync_dist=True)
            self.log_dict(self.test_metrics, on_epoch=True, batch_size=len(batch))
            self.log("test/n_masks", self.test_masks, on_epoch=True, batch_size=len(batch))
        return predictions

    def _stop_on_non_finite(self, loss: torch.Tensor, batch: list[Group], batch_idx: int) -> None:
        """Stop before the step: the weights are still the last finite ones, and checkpoints so far are kept."""
        checkpoints = getattr(self.trainer.checkpoint_callback, "dirpath", None) if self._trainer else None
        raise NonFiniteLoss(
            f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}: scans {', '.join(g['key'] for g in batch)}); stopped before that update. Checkpoints so "
            f"far are kept in {checkpoints}: lower optimizer.lr (or keep trainer.gradient_clip_val) and resume "
            "with ckpt_path=<last.ckpt>"
        )

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


def points_of(group: Group) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A group's point prompts (coords (N, P, 2), labels (N, P)), or ``None``."""
    return (group["point_coords"], group["point_labels"]) if "point_coords" in group else None


class NonFiniteLoss(SamlitError):
    """The training loss became NaN or infinite."""


def prediction(group: Group, pred: torch.Tensor) -> Prediction:
    """What a val/test step predicted for one image, with what a figure of it needs (CPU tensors): its frame
    ``image`` when the group has one, else its ``source`` (figures read the few images they draw)."""
    drawn = {"image": group["image"]} if "image" in group else {"source": group["source"]}
    return {
        "key": group["key"],
        "pred": pred.cpu(),
        "masks": group["masks"].cpu(),
        "pixel_boxes": group["pixel_boxes"],
        **drawn,
    }

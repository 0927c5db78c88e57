"""``SamFineTuner``: train SAM's mask decoder on box prompts; image and prompt encoders stay frozen.

A batch is a list of per-item groups (``samlit.core.batch.Group``). A group's image embedding (1, 256, 64, 64) (and
in HQ mode, ``samlit.model.hq``, the early ViT feature ``interm_embedding``) comes with the group (prepared once by
``samlit.run.prepare`` and read by the loader), or from the embeddings
the run keeps on its device (``resident``, by the group's ``image_digest``), or, with ``cache=none`` (the
baseline), from the frozen encoder on the group's ``image`` at every step. The module never reads files. The
decoder runs once per image (SAM's way: one embedding repeated per prompt) or once per step for every prompt of
the batch (``decoder_batching``); the loss and metrics are the same either way.

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

from samlit.core.batch import Group, Prediction, points_of
from samlit.core.errors import SamlitError
from samlit.core.rng import rng_state, set_rng_state
from samlit.core.strokes import stroke_scores
from samlit.model.hq import hq_features, is_hq
from samlit.model.metrics import stage_metrics
from samlit.model.sam import decode_prompt_batch, decode_prompts, encode_features, feature_names

FROZEN_PREFIXES = ("sam.image_encoder.", "sam.prompt_encoder.")
DECODER_BATCHING = ("auto", "per_image", "batched")


class SamFineTuner(L.LightningModule):
    """Fine-tune ``sam.mask_decoder``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (see ``samlit.model.sam.build_sam``).
        loss: ``loss(logits (N, h, w), target (N, h, w), iou_pred (N,)) -> {"loss": scalar, "loss_<term>": scalar,
            ...}`` (``samlit.model.losses.SamLoss``); ``train/loss`` and each ``train/loss_<term>`` are logged.
        optimizer: partial optimizer, called with the decoder's parameters only.
        scheduler: optional partial LR scheduler, called with the optimizer; stepped per epoch on ``val/iou``.
        loss_frame: ``low`` = loss on the decoder's 256 x 256 logits vs area-pooled targets (fast);
            ``full`` = logits upsampled to the original image (``Sam.postprocess_masks``) vs the full-res masks.
        mask_threshold: logit threshold for binary masks (SAM's is 0.0).
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
        decoder_batching: str = "auto",
    ) -> None:
        super().__init__()
        if loss_frame not in ("low", "full"):
            raise SamlitError(f"module.loss_frame={loss_frame!r} must be 'low' or 'full'")
        if decoder_batching not in DECODER_BATCHING:
            raise SamlitError(
                f"module.decoder_batching={decoder_batching!r} must be one of {', '.join(DECODER_BATCHING)}"
            )
        self.save_hyperparameters(ignore=["sam", "loss", "optimizer", "scheduler"], logger=False)
        self.sam = sam
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        # image_digest -> the frozen encoder's features kept on the device (run layer, cache.device)
        self.resident: dict[str, dict[str, torch.Tensor]] = {}
        self.encoder_calls = 0  # frames encoded in steps (cache=none)
        for frozen in (sam.image_encoder, sam.prompt_encoder):
            frozen.requires_grad_(False)
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

    @property
    def iou_head_trains(self) -> bool:
        """Whether the IoU prediction head trains (not in HQ mode's ``hq_train=hq``): only then does the loss's IoU
        term reach the gradients."""
        return any(p.requires_grad for p in self.sam.mask_decoder.iou_prediction_head.parameters())

    @property
    def feature_names(self) -> tuple[str, ...]:
        """What the decoder needs from the frozen encoder: ``embedding`` (+ ``interm_embedding`` in HQ mode)."""
        return feature_names(self.sam)

    def image_features(self, group: Group) -> dict[str, torch.Tensor]:
        """The frozen encoder's features of the group's frame (``feature_names``: the ``embedding``
        (1, 256, 64, 64) and, in HQ mode, the ``interm_embedding`` (1, 64, 64, C)), float32 on this module's device:
        the group's own (prepared), the resident ones of its ``image_digest``, or the frozen encoder on its
        ``image`` (``cache=none``)."""
        names = self.feature_names
        if all(name in group for name in names):
            return {name: group[name].to(self.device, non_blocking=True).float() for name in names}
        resident = self.resident.get(group.get("image_digest"))
        if resident is not None:
            return {name: resident[name].float() for name in names}
        if "image" not in group:
            missing = ", ".join(name for name in names if name not in group)
            raise SamlitError(f"{group['key']}: the batch carries neither its {missing} nor its image")
        self.encoder_calls += 1
        with torch.no_grad():
            return encode_features(self.sam, group["image"].to(self.device))

    def image_embedding(self, group: Group) -> torch.Tensor:
        """(1, 256, 64, 64) float32 embedding of the group's frame on this module's device (``image_features``)."""
        return self.image_features(group)["embedding"]

    def forward(self, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one image's box prompts ``group["boxes"]`` (N, 4) (SAM frame), with its point prompts
        ``group["point_coords"]`` (N, P, 2) and ``group["point_labels"]`` (N, P) when the group has them.

        Returns:
            low-res mask logits (N, 256, 256) and predicted IoU (N,).
        """
        features = self.image_features(group)
        return decode_prompts(self.sam, boxes=group["boxes"], points=points_of(group), **features)

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
        features = [self.image_features(g) for g in groups]
        fused = None
        if is_hq(self.sam.mask_decoder):  # once per image, then repeated for its prompts
            fused = [hq_features(self.sam.mask_decoder, **f) for f in features]
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(groups)
        for tokens in sorted({sparse.shape[1] for sparse, _ in prompts}):
            members = [i for i, (sparse, _) in enumerate(prompts) if sparse.shape[1] == tokens]
            sizes = [len(groups[i]["boxes"]) for i in members]
            part = list(zip(members, sizes, strict=True))
            logits, iou = decode_prompt_batch(
                self.sam,
                embeddings=torch.cat([features[i]["embedding"].expand(n, -1, -1, -1) for i, n in part]),
                sparse=torch.cat([prompts[i][0] for i in members]),
                dense=torch.cat([prompts[i][1] for i in members]),
                fused=None if fused is None else torch.cat([fused[i].expand(n, -1, -1, -1) for i, n in part]),
            )
            for i, part_logits, part_iou in zip(members, logits.split(sizes), iou.split(sizes), strict=True):
                out[i] = (part_logits, part_iou)
        return out

    def full_res(self, logits: torch.Tensor, group: Group) -> torch.Tensor:
        """(N, 256, 256) low-res logits -> (N, H, W) logits at the image's original size."""
        return self.sam.postprocess_masks(logits[:, None], group["input_size"], group["original_size"])[:, 0]

    def model_step(self, batch: list[Group], stage: str) -> tuple[dict[str, torch.Tensor] | None, list[Prediction]]:
        """Loss terms over every mask of the batch (each the mean over masks) and ``stage``'s metric updates.

        Returns the terms (``loss`` and each ``loss_<term>``; ``None`` for a batch without masks) and, outside
        training, each group's prediction.
        """
        metrics = getattr(self, f"{stage}_metrics")
        groups = [g for g in batch if len(g["boxes"]) > 0]
        num_masks = sum(len(g["boxes"]) for g in groups)
        if num_masks == 0:
            return None, []
        total: dict[str, torch.Tensor] = {}
        predictions = []
        training = stage == "train"
        for group, (low_res_logits, iou_pred) in zip(groups, self.decode_batch(groups), strict=True):
            full = None if training and self.hparams.loss_frame == "low" else self.full_res(low_res_logits, group)
            if self.hparams.loss_frame == "low":
                logits, target = low_res_logits, group["low_res_targets"]
            else:
                logits, target = full, group["masks"].float()
            if not self.iou_head_trains:  # HQ mode, hq_train=hq: the IoU term would train the HQ token through the
                iou_pred = iou_pred.detach()  # transformer's attention for SAM's frozen IoU head; still logged
            if not self.iou_head_trains:  # HQ mode, hq_train=hq: the IoU term would train the HQ token (through the
                iou_pred = iou_pred.detach()  # transformer's attention) for SAM's frozen IoU head; still logged
            for name, term in self.loss(logits, target, iou_pred).items():  # each term: mean over the batch's masks
                total[name] = total.get(name, 0) + term * len(low_res_logits) / num_masks
            if training:  # in the decoder's frame: upsampling every step to full size would double the step
                pred, truth = low_res_logits.detach() > self.hparams.mask_threshold, group["low_res_targets"] > 0.5
            else:
                pred, truth = full.detach() > self.hparams.mask_threshold, group["masks"]
                predictions.append(prediction(group, pred))
            strokes = None if training else predictions[-1]["strokes"]  # each mask scored once, in prediction()
            metrics.update(pred[:, None].long(), truth[:, None].long(), strokes=strokes)
            if stage == "test":
                self.test_masks.update(len(low_res_logits))
        return total, predictions

    def training_step(self, batch: list[Group], batch_idx: int) -> torch.Tensor | None:
        terms, _ = self.model_step(batch, "train")
        if terms is None:
            return None
        loss = terms["loss"]
        if not torch.isfinite(loss):
            self._stop_on_non_finite(loss, batch, batch_idx)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True)
        for name, term in terms.items():
            if name != "loss":
                self.log(f"train/{name}", term, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[Group], batch_idx: int) -> list[Prediction]:
        terms, predictions = self.model_step(batch, "val")
        if terms is not None:
            self.log("val/loss", terms["loss"], on_epoch=True, prog_bar=True, batch_size=len(batch), sync_dist=True)
            on_bar = ("val/iou", "val/dice")  # the stroke scores go to the loggers, not the progress bar
            for bar in (True, False):
                chosen = {k: m for k, m in self.val_metrics.items() if (k in on_bar) == bar}
                self.log_dict(chosen, on_epoch=True, prog_bar=bar, batch_size=len(batch))
        return predictions

    def test_step(self, batch: list[Group], batch_idx: int) -> list[Prediction]:
        terms, predictions = self.model_step(batch, "test")
        if terms is not None:
            self.log("test/loss", terms["loss"], on_epoch=True, batch_size=len(batch), sync_dist=True)
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
        """The parameters that train: the mask decoder's (HQ mode: ``model.hq_train``'s, ``samlit.model.hq``)."""
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


def prediction(group: Group, pred: torch.Tensor) -> Prediction:
    """What a val/test step predicted for one item (CPU tensors), with its ``source`` (the run layer reads the frame
    image of the few it draws) and its masks' ``stroke_scores``, computed once here for the stage's metrics and the
    per-image rows."""
    pred, masks = pred.cpu(), group["masks"].cpu()
    return {
        "key": group["key"],
        "pred": pred,
        "masks": masks,
        "pixel_boxes": group["pixel_boxes"],
        "source": group["source"],
        "strokes": stroke_scores(pred, masks),
    }

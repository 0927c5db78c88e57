"""``SamFineTuner``: train SAM's mask decoder on box prompts; image and prompt encoders stay frozen.

A batch is a list of per-item groups (``samlit.core.batch.Group``). A group's image embedding (1, 256, 64, 64) (and
in HQ mode, ``samlit.model.hq``, the early ViT feature ``interm_embedding``) comes with the group (prepared once by
``samlit.run.prepare`` and read by the loader), or from the embeddings
the run keeps on its device (``resident``, by the group's ``image_digest``), or, with ``cache=none`` (the
baseline), from the frozen encoder on the group's ``image`` at every step. The module never reads files. The
decoder runs once per image (SAM's way: one embedding repeated per prompt) or once per step for every prompt of
the batch (``decoder_batching``); the loss and metrics are the same either way.

Corrective clicks (``samlit.model.interactive``): with ``corrective_clicks=K`` each training prompt gets K more
decoder passes, each adding a click drawn from the current error and maybe the previous logits as the mask prompt;
with ``test_clicks=N`` the test pass also scores every mask after 0..N clicks at the centre of its largest error
region. Both reuse the image's features: a click costs a decoder pass, never an encoder pass.

Validation and test steps return what they predicted (``Prediction`` rows); callbacks
(``samlit.run.callbacks``) collect them for the report and the dashboards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from segment_anything.modeling import Sam
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchmetrics import SumMetric

from samlit.core.batch import Group, Prediction, points_of
from samlit.core.clicks import sample_click
from samlit.core.errors import SamlitError
from samlit.core.rng import rng_state, set_rng_state
from samlit.core.seeds import stable_hash
from samlit.core.strokes import stroke_scores
from samlit.model.hq import hq_features, is_hq
from samlit.model.interactive import DECODER_STRIDE, click_ious, decoder_frame_prompts, with_points
from samlit.model.lora import NO_ADAPTERS, LoraSpec, apply_lora
from samlit.model.metrics import ClickCurve, stage_metrics
from samlit.model.resume import (
    apply_optimizer_changes,
    factory_settings,
    finite_checkpoint,
    optimizer_changes,
    optimizer_settings,
)
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
        corrective_clicks: K more decoder passes per training prompt, each adding one click drawn uniformly from
            the current error in the decoder's frame (``samlit.core.clicks.sample_click``; 0 = box prompts only).
            The loss is the mean over the K + 1 passes; each pass's gradient flows through its own decoder call
            (the previous logits are detached).
        mask_prompt_probability: per pass and image, the chance that the previous pass's logits are the mask
            prompt (micro-sam's 0.5).
        click_from_truth_probability: per click, the chance that it is drawn from the ground truth instead of the
            error (a positive click; SAM 2's ``prob_to_sample_from_gt_for_train``, 0.1 in its configs).
        test_clicks: the test pass also scores each mask after 1..N clicks at the centre of its largest error
            region (``samlit.model.interactive.click_ious``), logged as ``test/clicks/<key>`` (``ClickCurve``).
        seed: with the epoch, the item's key and the pass, seeds each training click and mask-prompt choice, so
            workers, DDP and a resumed run draw the same ones.
        max_prompts_per_call: at most this many prompts per decoder call (``decode_in_parts``; ``None``: all of a
            call's at once): an image with hundreds of instances (page frame) takes one part's memory, not
            hundreds of prompts' (~100 MB each on tiny, CPU, with gradients).
        peft: LoRA adapters on the mask decoder and / or the image encoder (``samlit.model.lora``; ``None``: none).
            With encoder adapters the encoder trains: it runs on each group's ``image`` at every step (the run
            turns the embedding cache off) and its adapters are in the checkpoints.

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
        corrective_clicks: int = 0,
        mask_prompt_probability: float = 0.5,
        click_from_truth_probability: float = 0.1,
        test_clicks: int = 0,
        seed: int = 0,
        max_prompts_per_call: int | None = 16,
        peft: LoraSpec | None = None,
    ) -> None:
        super().__init__()
        if loss_frame not in ("low", "full"):
            raise SamlitError(f"module.loss_frame={loss_frame!r} must be 'low' or 'full'")
        if decoder_batching not in DECODER_BATCHING:
            raise SamlitError(
                f"module.decoder_batching={decoder_batching!r} must be one of {', '.join(DECODER_BATCHING)}"
            )
        for key, value in (("corrective_clicks", corrective_clicks), ("test_clicks", test_clicks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                name = "clicks" if key == "test_clicks" else f"module.{key}"
                raise SamlitError(f"{name}={value!r} must be a whole number of clicks >= 0 (0 = off)")
        if max_prompts_per_call is not None and (
            isinstance(max_prompts_per_call, bool)
            or not isinstance(max_prompts_per_call, int)
            or max_prompts_per_call < 1
        ):
            raise SamlitError(
                f"module.max_prompts_per_call={max_prompts_per_call!r} must be a whole number >= 1 (or null: no limit)"
            )
        for key, value in (
            ("mask_prompt_probability", mask_prompt_probability),
            ("click_from_truth_probability", click_from_truth_probability),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise SamlitError(f"module.{key}={value!r} must be a probability in [0, 1]")
        self.save_hyperparameters(ignore=["sam", "loss", "optimizer", "scheduler", "peft"], logger=False)
        self.sam = sam
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        # image_digest -> the frozen encoder's features kept on the device (run layer, cache.device)
        self.resident: dict[str, dict[str, torch.Tensor]] = {}
        self.encoder_calls = 0  # frames encoded in steps (cache=none)
        for frozen in (sam.image_encoder, sam.prompt_encoder):
            frozen.requires_grad_(False)
        self.peft = peft or NO_ADAPTERS
        self.resumed_changes: dict[str, Any] = {}  # optimizer values a resume sets otherwise (samlit.model.resume)
        apply_lora(sam, self.peft)
        self.train_metrics = stage_metrics("train")
        self.val_metrics = stage_metrics("val")
        self.test_metrics = stage_metrics("test")
        self.test_masks = SumMetric()
        self.test_clicks = ClickCurve(clicks=test_clicks) if test_clicks else None

    def train(self, mode: bool = True) -> SamFineTuner:
        """Only the decoder (and an image encoder with adapters: their dropout) switches to train mode; the frozen
        encoders stay in eval mode."""
        super().train(mode)
        if not self.encoder_trains:
            self.sam.image_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self

    @property
    def encoder_trains(self) -> bool:
        """Whether the image encoder has parameters that train (``peft`` encoder adapters): then no cache can hold
        its output, and each step encodes its groups' images."""
        return self.peft.adapts_encoder

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
        if not self.encoder_trains and all(name in group for name in names):
            return {name: group[name].to(self.device, non_blocking=True).float() for name in names}
        resident = None if self.encoder_trains else self.resident.get(group.get("image_digest"))
        if resident is not None:
            return {name: resident[name].float() for name in names}
        if "image" not in group:
            missing = ", ".join(name for name in names if name not in group)
            raise SamlitError(f"{group['key']}: the batch carries neither its {missing} nor its image")
        self.encoder_calls += 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoder_trains):
            return encode_features(self.sam, group["image"].to(self.device))

    def image_embedding(self, group: Group) -> torch.Tensor:
        """(1, 256, 64, 64) float32 embedding of the group's frame on this module's device (``image_features``)."""
        return self.image_features(group)["embedding"]

    def forward(
        self, group: Group, features: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one image's box prompts ``group["boxes"]`` (N, 4) (SAM frame), with its point prompts
        ``group["point_coords"]`` (N, P, 2) and ``group["point_labels"]`` (N, P) and its mask prompt
        ``group["mask_input"]`` (N, 256, 256) when the group has them. ``features``: the group's
        ``image_features`` when already at hand.

        Returns:
            low-res mask logits (N, 256, 256) and predicted IoU (N,).
        """
        features = self.image_features(group) if features is None else features
        boxes, points, mask_input = group["boxes"], points_of(group), group.get("mask_input")

        def decode(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            return decode_prompts(
                self.sam,
                boxes=boxes[start:stop],
                points=None if points is None else (points[0][start:stop], points[1][start:stop]),
                mask_input=None if mask_input is None else mask_input[start:stop],
                **features,
            )

        return self.decode_in_parts(decode, len(boxes))

    def decode_in_parts(
        self, decode: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode(start, stop)`` -> (logits, iou) of prompts ``start:stop``, for all ``n`` prompts in calls of at
        most ``max_prompts_per_call``: memory bounded whatever the prompts per image. With gradients each call is
        checkpointed (``torch.utils.checkpoint``, non-reentrant: its activations are recomputed in the backward pass
        instead of kept), so the gradients are one call's, at one part's memory (+ a second forward of each part)."""
        step = self.hparams.max_prompts_per_call
        if not step or n <= step:
            return decode(0, n)
        parts = [
            checkpoint(decode, start, min(start + step, n), use_reentrant=False)
            if torch.is_grad_enabled()
            else decode(start, min(start + step, n))
            for start in range(0, n, step)
        ]
        return torch.cat([logits for logits, _ in parts]), torch.cat([iou for _, iou in parts])

    def decode_batch(
        self, groups: list[Group], features: list[dict[str, torch.Tensor]] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` of every group, as one decoder call per image or one for all prompts of the batch
        (``decoder_batching``); prompts with a different number of sparse tokens (points or not) go in separate
        calls. ``features``: each group's ``image_features`` when already at hand."""
        features = [self.image_features(g) for g in groups] if features is None else features
        batched = self.hparams.decoder_batching == "batched" or (
            self.hparams.decoder_batching == "auto" and self.device.type == "cuda"
        )
        if not batched or len(groups) == 1:
            return [self(group, f) for group, f in zip(groups, features, strict=True)]
        prompts = [
            self.sam.prompt_encoder(points=points_of(g), boxes=g["boxes"], masks=mask_prompt(g)) for g in groups
        ]  # (N, T, 256), (N, 256, 64, 64) per group
        fused = None
        if is_hq(self.sam.mask_decoder):  # once per image, then repeated for its prompts
            fused = [hq_features(self.sam.mask_decoder, **f) for f in features]
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(groups)
        for tokens in sorted({sparse.shape[1] for sparse, _ in prompts}):
            members = [i for i, (sparse, _) in enumerate(prompts) if sparse.shape[1] == tokens]
            sizes = [len(groups[i]["boxes"]) for i in members]
            image_of = torch.repeat_interleave(torch.arange(len(members)), torch.tensor(sizes)).to(self.device)
            embeddings = torch.cat([features[i]["embedding"] for i in members])  # one per image, indexed per prompt
            sparse = torch.cat([prompts[i][0] for i in members])
            dense = torch.cat([prompts[i][1] for i in members])
            fused_images = None if fused is None else torch.cat([fused[i] for i in members])

            decode = functools.partial(  # bound now: a checkpointed part runs again in the backward pass
                decode_rows,
                self.sam,
                image_of=image_of,
                embeddings=embeddings,
                sparse=sparse,
                dense=dense,
                fused=fused_images,
            )
            logits, iou = self.decode_in_parts(decode, len(image_of))
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
        groups = [g for g in batch if len(g["boxes"]) > 0]
        num_masks = sum(len(g["boxes"]) for g in groups)
        if num_masks == 0:
            return None, []
        total: dict[str, torch.Tensor] = {}
        predictions = []
        training = stage == "train"
        features = [self.image_features(g) for g in groups]
        first = decoded = self.decode_batch(groups, features)
        first_groups, first_full = groups, []
        passes = 1 + (self.hparams.corrective_clicks if training else 0)
        for index in range(passes):
            if index > 0:  # a corrective pass: one more click per mask, maybe the last logits as the mask prompt
                groups = [self.click_pass(g, logits, index) for g, (logits, _) in zip(groups, decoded, strict=True)]
                decoded = self.decode_batch(groups, features)
            for group, (low_res_logits, iou_pred) in zip(groups, decoded, strict=True):
                full = None if training and self.hparams.loss_frame == "low" else self.full_res(low_res_logits, group)
                if self.hparams.loss_frame == "low":
                    logits, target = low_res_logits, group["low_res_targets"]
                else:
                    logits, target = full, group["masks"].float()
                if not self.iou_head_trains:  # HQ mode, hq_train=hq: the IoU term would train the HQ token (through
                    iou_pred = iou_pred.detach()  # the transformer's attention) for SAM's frozen IoU head; still logged
                for name, term in self.loss(logits, target, iou_pred).items():  # each: mean over masks and passes
                    total[name] = total.get(name, 0) + term * len(low_res_logits) / num_masks / passes
                if index == 0:
                    first_full.append(full)
        for group, (low_res_logits, _), own, full in zip(first_groups, first, features, first_full, strict=True):
            predicted = self._score(group, low_res_logits=low_res_logits, full=full, features=own, stage=stage)
            predictions += [predicted] if predicted is not None else []
        return total, predictions

    def _score(
        self,
        group: Group,
        *,
        low_res_logits: torch.Tensor,
        full: torch.Tensor | None,
        features: dict[str, torch.Tensor],
        stage: str,
    ) -> Prediction | None:
        """``stage``'s metric updates for one group's first-pass masks (the test pass: and its N-click curve);
        outside training, its prediction. Training scores in the decoder's frame: upsampling every step to full
        size would double the step."""
        if stage == "train":
            pred, truth = low_res_logits.detach() > self.hparams.mask_threshold, group["low_res_targets"] > 0.5
            self.train_metrics.update(pred[:, None].long(), truth[:, None].long())
            return None
        pred = full.detach() > self.hparams.mask_threshold
        predicted = prediction(group, pred)  # each mask's stroke scores computed once, there
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(pred[:, None].long(), group["masks"][:, None].long(), strokes=predicted["strokes"])
        if stage == "test":
            self.test_masks.update(len(low_res_logits))
            if self.test_clicks is not None:
                self.test_clicks.update(self.click_curve(group, low_res_logits, features))
        return predicted

    def click_pass(self, group: Group, low_res_logits: torch.Tensor, index: int) -> Group:
        """The group of training pass ``index``: a click per mask drawn from the error of ``low_res_logits``
        (N, 256, 256) against ``low_res_targets`` > 0.5 in the decoder's frame, within the image's part of it
        (``sample_click``; a padding point where nothing is wrong), appended to its points; the logits (detached)
        as the mask prompt with ``mask_prompt_probability``. Seeded by (seed, epoch, key, index)."""
        generator = torch.Generator().manual_seed(
            stable_hash(self.hparams.seed, self.current_epoch, group["key"], index) >> 1
        )
        h, w = (-(-side // DECODER_STRIDE) for side in group["input_size"])  # ceil: the image's part of the frame
        pred = (low_res_logits.detach() > self.hparams.mask_threshold)[:, :h, :w]
        truth = (group["low_res_targets"] > 0.5)[:, :h, :w]
        clicks = []
        for p, t in zip(pred, truth, strict=True):
            from_truth = float(torch.rand((), generator=generator)) < self.hparams.click_from_truth_probability
            clicks.append(sample_click(p, t, generator=generator, from_truth=from_truth))
        coords, labels = with_points(points_of(group), decoder_frame_prompts(clicks, device=low_res_logits.device))
        out: Group = {k: v for k, v in group.items() if k != "mask_input"}  # type: ignore[assignment]
        out["point_coords"], out["point_labels"] = coords, labels
        if float(torch.rand((), generator=generator)) < self.hparams.mask_prompt_probability:
            out["mask_input"] = low_res_logits.detach()
        return out

    def click_curve(
        self, group: Group, low_res_logits: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """(N, test_clicks + 1) per-mask IoU after 0..N clicks at the centres of the largest error regions, at the
        original resolution (``click_ious``), from the box pass's ``low_res_logits`` (N, 256, 256) and the
        group's ``image_features``."""
        (height, width), (h, w) = group["original_size"], group["input_size"]

        def decode(points: tuple[torch.Tensor, torch.Tensor] | None, mask_input: torch.Tensor | None) -> torch.Tensor:
            prompted = dict(group)
            if points is not None:
                prompted["point_coords"], prompted["point_labels"] = points
            if mask_input is not None:
                prompted["mask_input"] = mask_input
            return self(prompted, features)[0]

        return click_ious(
            decode=decode,
            to_masks=lambda logits: self.full_res(logits, group) > self.hparams.mask_threshold,
            truth=group["masks"].to(self.device),
            scale=(w / width, h / height),
            clicks=self.hparams.test_clicks,
            points=points_of(group),
            low_res_logits=low_res_logits,
        )

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

    def on_test_epoch_end(self) -> None:
        """The N-click curve (``test_clicks``): ``test/clicks/<key>`` for each key of ``ClickCurve.compute``."""
        if self.test_clicks is not None:
            if int(self.test_clicks.count) > 0 or self.trainer.world_size > 1:
                for key, value in self.test_clicks.compute().items():
                    self.log(f"test/clicks/{key}", value)  # ClickCurve.compute syncs DDP ranks
            self.test_clicks.reset()

    def _stop_on_non_finite(self, loss: torch.Tensor, batch: list[Group], batch_idx: int) -> None:
        """Stop before the step: the weights are still the last finite ones (no ``interrupted.ckpt`` is written:
        they may already have diverged); the advice names the checkpoint written before it (``finite_checkpoint``),
        or says to start again."""
        finite = finite_checkpoint(self.trainer) if self._trainer is not None else None
        lr = (factory_settings(self.optimizer) or {}).get("lr")
        lower = f"optimizer.lr={lr / 10:g}" if isinstance(lr, int | float) else "a lower optimizer.lr"
        advice = (
            f"{finite} holds the end of the last epoch whose losses were all finite: resume from it with a lower "
            f"learning rate (the resumed optimizer takes it): ckpt_path={finite} {lower}"
            if finite is not None
            else f"no checkpoint was written before it: start a new run with {lower}"
        )
        raise NonFiniteLoss(
            f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}: scans {', '.join(g['key'] for g in batch)}); stopped before that update. {advice} (or keep "
            "trainer.gradient_clip_val)"
        )

    def on_train_start(self) -> None:
        """A resume with other optimizer values: set them on the optimizer Lightning has just restored."""
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        apply_optimizer_changes(self.trainer.optimizers, schedulers, self.resumed_changes)
        self.resumed_changes = {}

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
        """Checkpoints keep only what trains (frozen encoder weights come back from ``model.weights``; encoder
        adapters are kept) plus the RNG states, so ``ckpt_path=`` resumes with the same shuffles, jitter and views
        as an unbroken run, and the adapter settings they were trained with (``peft``)."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(FROZEN_PREFIXES) and ".lora_" not in k]:
            del state[key]
        checkpoint["samlit_rng"] = rng_state()
        checkpoint["samlit_peft"] = self.peft.settings()
        checkpoint["samlit_optimizer"] = optimizer_settings(self.optimizer, self.scheduler)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the RNG states on a resume; a checkpoint trained with other adapter settings, another optimizer or
        other scheduler settings is a one-line ``SamlitError`` naming the key (``samlit.model.resume``); other
        optimizer values (``optimizer.lr``, ...) are applied to the restored optimizer when the fit starts."""
        saved = checkpoint.get("samlit_peft", NO_ADAPTERS.settings())
        ours = self.peft.settings()
        differing = [key for key in ours if saved.get(key) != ours[key]]
        if differing:
            key = differing[0]
            raise SamlitError(
                f"the checkpoint was trained with peft.{key}={saved.get(key)!r}, this run has "
                f"peft.{key}={ours[key]!r}; resume with the checkpoint's peft settings (its run's "
                "config_resolved.yaml), or start a new run without ckpt_path"
            )
        if self._trainer is not None and self.trainer.state.fn == "fit":  # resume
            ours = optimizer_settings(self.optimizer, self.scheduler)
            self.resumed_changes = optimizer_changes(checkpoint.get("samlit_optimizer"), ours)
            if "samlit_rng" in checkpoint:
                set_rng_state(checkpoint["samlit_rng"])
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(FROZEN_PREFIXES) and key not in state:
                state[key] = value


class NonFiniteLoss(SamlitError):
    """The training loss became NaN or infinite."""


def decode_rows(
    sam: Sam,
    start: int,
    stop: int,
    *,
    image_of: torch.Tensor,
    embeddings: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    fused: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decode_prompt_batch`` of prompts ``start:stop`` of a batch: ``image_of`` (P,) each prompt's image row in
    ``embeddings`` (G, 256, 64, 64) and ``fused`` (G, 32, 256, 256) (HQ mode); ``sparse`` (P, T, 256) and ``dense``
    (P, 256, 64, 64) the prompt encoder's output."""
    rows = image_of[start:stop]
    return decode_prompt_batch(
        sam,
        embeddings=embeddings[rows],
        sparse=sparse[start:stop],
        dense=dense[start:stop],
        fused=None if fused is None else fused[rows],
    )


def mask_prompt(group: Group) -> torch.Tensor | None:
    """The group's mask prompt as the prompt encoder takes it: (N, 1, 256, 256), or ``None``."""
    return group["mask_input"][:, None] if "mask_input" in group else None


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

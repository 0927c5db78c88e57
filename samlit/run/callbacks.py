"""Lightning callbacks of a run: per-epoch curves (``MetricHistory``), val overlays on the dashboards
(``ValOverlays``), ``checkpoints/interrupted.ckpt`` on Ctrl-C, SIGTERM or an error (``InterruptCheckpoint``) and
checkpoints that follow a moved run dir (``RunCheckpoint``). The test pass's collector is
``samlit.run.testing.TestPredictions``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from samlit.core.distributed import gather_by_key
from samlit.model.module import NonFiniteLoss
from samlit.run import dashboard
from samlit.run.figures import CURVES, prediction_panels
from samlit.run.testing import with_images

log = logging.getLogger(__name__)


class MetricHistory(L.Callback):
    """Per-epoch values of ``CURVES`` and of ``also`` (whatever the logger), for the report's curves and the
    value sweepers optimise."""

    def __init__(self, *, also: tuple[str, ...] = ()) -> None:
        self.keys = tuple(dict.fromkeys((*CURVES, *also)))
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        row = {k: float(logged[k]) for k in self.keys if k in logged}
        self.epochs.append({"epoch": trainer.current_epoch, **row})

    def best(self, key: str) -> float | None:
        """The highest per-epoch value of ``key`` so far, or ``None``."""
        values = [row[key] for row in self.epochs if key in row]
        return max(values) if values else None


class ValOverlays(L.Callback):
    """Each ``every_n_epochs`` val epoch: ground truth | prediction (box prompts drawn) of the first ``count``
    val scans by key (the same scans every epoch) as ``val/overlays`` images on W&B / TensorBoard.

    Args:
        count: val scans drawn.
        every_n_epochs: log every this many val epochs.
        max_side: long side of each logged panel, px.
    """

    def __init__(self, *, count: int = 2, every_n_epochs: int = 1, max_side: int = 384) -> None:
        self.count = count
        self.every_n_epochs = every_n_epochs
        self.max_side = max_side
        self._kept: list[dict[str, Any]] = []

    def _active(self, trainer: L.Trainer) -> bool:
        """The same answer on every rank (the gather below is a collective)."""
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs or not self.count:
            return False
        return any(isinstance(lg, WandbLogger | TensorBoardLogger) for lg in trainer.loggers)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._kept = []

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self._active(trainer):
            self._kept = sorted([*self._kept, *(outputs or [])], key=lambda p: p["key"])[: self.count]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        kept = gather_by_key(self._kept)[: self.count]
        self._kept = []
        if not trainer.is_global_zero:
            return
        images, captions = [], []
        for predicted in with_images(kept, trainer.datamodule):
            picture = prediction_panels({"": predicted})
            images.append(dashboard.shrink(picture, max_side=2 * self.max_side))
            captions.append(predicted["key"])
        if images:
            dashboard.log_images(
                trainer.loggers, key="val/overlays", images=images, captions=captions, step=trainer.global_step
            )


class InterruptCheckpoint(L.Callback):
    """``<dirpath>/<filename>.ckpt`` saved when a fit stops on an exception (SIGTERM, Ctrl-C, an error), kept until
    a fit ends normally.

    Not Lightning's ``OnExceptionCheckpoint``, on purpose: with one of those among the callbacks, Lightning turns
    ``fit(ckpt_path=None)`` into ``ckpt_path="last"`` and resumes, unasked, from any last or on-exception
    checkpoint it finds in the run dir (with a warning on every fresh run that there is none). And it deletes
    the file when any later trainer call ends: a resumed ``train.py`` runs its zero-shot test before the fit
    that reads the file.
    """

    def __init__(self, *, dirpath: str | Path, filename: str = "interrupted") -> None:
        self.dirpath, self.filename = Path(dirpath), filename
        self.training = False  # whether this fit has started its training loop (its checkpoint, if any, restored)

    @property
    def ckpt_path(self) -> Path:
        return self.dirpath / f"{self.filename}.ckpt"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.training = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Not before the training loop: a resume refused while restoring (other peft or schedule settings) would
        # overwrite the very checkpoint it was given with a model that never trained. Not for a non-finite loss: the
        # weights may already have diverged (finite but huge); its advice names last.ckpt.
        if trainer.state.fn == "fit" and self.training and not isinstance(exception, NonFiniteLoss):
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # optimizer, loops, loader: exact resume

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)  # the fit finished: nothing left to resume


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that follows its run dir when the dir is moved.

    A checkpoint records absolute paths (its ``dirpath``, the best and top-k files). Resumed in a run dir that was
    moved (``ckpt_path=<new>/checkpoints/last.ckpt hydra.run.dir=<new>``), Lightning keeps only the old
    ``best_model_path`` (a file that is gone) and forgets the best score, so the fine-tuned test would load a
    missing file, or a worse epoch than the best. Here, when every recorded file sits by name in the new
    ``dirpath``, the paths move there and the whole state is restored; any other change keeps Lightning's way.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and Path(old) != Path(self.dirpath):
            moved = moved_state(state_dict, new_dir=Path(self.dirpath))
            if moved is not None:
                log.info("run dir moved: checkpoint records in %s now point to %s", old, self.dirpath)
                state_dict = moved
        super().load_state_dict(state_dict)


def moved_state(state: dict[str, Any], *, new_dir: Path) -> dict[str, Any] | None:
    """``state`` (a ``ModelCheckpoint.state_dict()``) with its dir and files moved to ``new_dir``, or ``None``
    when a recorded file is not there by name (then it is not the same run dir, moved)."""
    paths = [state.get(k) for k in ("best_model_path", "kth_best_model_path", "last_model_path")]
    paths += list(state.get("best_k_models") or {})
    if not all((new_dir / Path(p).name).is_file() for p in paths if p):
        return None

    def move(path: str | None) -> str | None:
        return str(new_dir / Path(path).name) if path else path

    moved = {k: move(state.get(k)) for k in ("best_model_path", "kth_best_model_path", "last_model_path")}
    best_k = {move(p): score for p, score in (state.get("best_k_models") or {}).items()}
    return {**state, **moved, "best_k_models": best_k, "dirpath": str(new_dir)}

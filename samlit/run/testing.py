"""A test pass and what it yields: the logged metrics, a row per test image (IoU, Dice, boundary IoU at 1 px,
clDice) and the predictions of a few images for figures, collected by a callback from what ``test_step``
returns. The few images a figure draws are read here, in the run layer (``with_images``), never by the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L

from samlit.core.batch import Prediction
from samlit.core.distributed import gather_by_key
from samlit.core.errors import SamlitError
from samlit.model.metrics import click_summary, scan_row

ORDERS = ("first", "worst")
BOUNDARY_IOU = {  # metrics["boundary_iou"] name -> logged test/<key>
    "1px": "boundary_iou_1px",
    "2px": "boundary_iou_2px",
    "3px": "boundary_iou_3px",
    "2%": "boundary_iou_2pct",
    "2%_band_covers_mask": "band_covers_mask_2pct",
}


class TestPredictions(L.Callback):
    """Collects each test pass: ``rows`` (every test image: ``samlit.model.metrics.scan_row``) and ``kept``, the full
    predictions of ``keep`` images: the ``first`` by key (the same images in every pass: before/after figures)
    or the ``worst`` by IoU. Under DDP both are gathered from every rank.

    Args:
        keep: how many images keep their full prediction.
        order: ``first`` or ``worst``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, *, keep: int = 4, order: str = "first") -> None:
        if order not in ORDERS:
            raise SamlitError(f"order={order!r} must be one of {', '.join(ORDERS)}")
        self.keep = keep
        self.order = order
        self.rows: list[dict[str, Any]] = []
        self.kept: list[Prediction] = []

    def _rank(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ranked = sorted(items, key=(lambda p: p["key"]) if self.order == "first" else (lambda p: (p["iou"], p["key"])))
        return ranked[: self.keep]

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows, self.kept = [], []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        for predicted in outputs or []:
            row = scan_row(
                predicted["key"], pred=predicted["pred"], truth=predicted["masks"], strokes=predicted.get("strokes")
            )
            self.rows.append(row)
            self.kept = self._rank([*self.kept, {**predicted, "iou": row["iou"]}])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = gather_by_key(self.rows)
        self.kept = self._rank(gather_by_key(self.kept))


@dataclass
class TestResult:
    """``metrics``: ``iou``, ``dice``, ``boundary_iou`` (``1px``, ``2px``, ``3px``, ``2%`` and
    ``2%_band_covers_mask``: the fraction of masks whose 2 % band is the whole ground-truth mask), ``cldice`` and
    ``n_masks`` over the test split, each a mean over masks (``samlit.core.strokes``); with ``clicks=N`` also
    ``clicks`` (``samlit.model.metrics.click_summary``: mIoU after 0..N clicks, NoC@85 / NoC@90); ``rows`` and
    ``kept``: see ``TestPredictions``."""

    __test__ = False

    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    kept: list[Prediction] = field(default_factory=list)


def run_test(trainer: L.Trainer, module: L.LightningModule, datamodule: Any, **test_kwargs: Any) -> TestResult:
    """``trainer.test`` over the test split; ``trainer`` must carry a ``TestPredictions`` callback."""
    (collector,) = [c for c in trainer.callbacks if isinstance(c, TestPredictions)]
    (logged,) = trainer.test(module, datamodule=datamodule, verbose=False, **test_kwargs)
    metrics = {"iou": float(logged["test/iou"]), "dice": float(logged["test/dice"])}
    metrics["boundary_iou"] = {name: float(logged[f"test/{key}"]) for name, key in BOUNDARY_IOU.items()}
    metrics["cldice"] = float(logged["test/cldice"])
    metrics["n_masks"] = int(logged["test/n_masks"])
    clicks = click_summary(logged)  # clicks=N: the N-click curve, NoC@85 / NoC@90
    if clicks is not None:
        metrics["clicks"] = clicks
    return TestResult(metrics=metrics, rows=collector.rows, kept=with_images(collector.kept, datamodule))


def with_images(predictions: list[Prediction], datamodule: Any) -> list[Prediction]:
    """Predictions with their frame ``image`` (3, h, w) uint8 (figures draw on it), read from the item's files by
    its ``source`` (``InstanceDataModule.frame_image``: a few images, once per test pass)."""
    return [p if "image" in p else {**p, "image": datamodule.frame_image(p["source"])} for p in predictions]

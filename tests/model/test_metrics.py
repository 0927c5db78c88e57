"""The metrics of a stage: IoU / Dice everywhere, the stroke scores for val and test only, each mask scored once
per pass (in the step, carried in its ``Prediction`` to the logged means and the per-image rows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import samlit.model.metrics
import samlit.model.module
from samlit.core.strokes import STROKE_KEYS, stroke_scores
from samlit.data.frame import to_sam_frame
from samlit.data.sample import InstanceSample
from samlit.model.metrics import scan_row, stage_metrics


def group(key: str, *, n: int, seed: int) -> dict:
    """A prepared group (random embedding) of ``n`` square stamps in a 96 x 112 scan."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 96, 112), bool)
    for i in range(n):
        masks[i, 10:40, 5 + 40 * i : 35 + 40 * i] = True
    boxes = np.array([[5 + 40 * i, 10, 35 + 40 * i, 40] for i in range(n)], np.float32)
    sample = InstanceSample(key=key, image=rng.integers(0, 255, (96, 112, 3), np.uint8), masks=masks, boxes=boxes)
    out = {**to_sam_frame(sample, boxes=sample.boxes), "source": (key, None, 0)}
    del out["image"]
    out["embedding"] = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(seed))
    return out


def counting(monkeypatch: pytest.MonkeyPatch, module: object) -> list[int]:
    """Count the masks ``module.stroke_scores`` scores (one entry per call)."""
    calls: list[int] = []

    def counted(pred, truth, **kwargs):
        calls.append(len(truth))
        return stroke_scores(pred, truth, **kwargs)

    monkeypatch.setattr(module, "stroke_scores", counted)
    return calls


def test_val_and_test_log_the_stroke_scores_train_does_not():
    assert set(stage_metrics("train")) == {"train/iou", "train/dice"}
    for stage in ("val", "test"):
        assert set(stage_metrics(stage)) == {f"{stage}/{k}" for k in ("iou", "dice", *STROKE_KEYS)}


def test_a_test_step_scores_each_mask_once_for_the_metrics_and_the_rows(compose_cfg, monkeypatch):
    module = instantiate(compose_cfg().module)
    in_step = counting(monkeypatch, samlit.model.module)
    in_metrics = counting(monkeypatch, samlit.model.metrics)
    batch = [group("a", n=2, seed=0), group("b", n=1, seed=1)]
    module.model_step(batch, "train")
    assert in_step == in_metrics == []  # train: IoU / Dice in the decoder's frame only

    _, predictions = module.model_step(batch, "test")
    assert in_step == [2, 1] and in_metrics == []  # once per group, in prediction(); the metrics reuse them
    rows = [scan_row(p["key"], pred=p["pred"], truth=p["masks"], strokes=p["strokes"]) for p in predictions]
    assert in_metrics == []  # so do the rows

    logged = module.test_metrics.compute()
    for key in STROKE_KEYS:  # means over the 3 masks
        per_mask = np.concatenate([p["strokes"][key] for p in predictions])
        expected = stroke_scores(torch.cat([p["pred"] for p in predictions]), torch.cat([p["masks"] for p in batch]))
        np.testing.assert_allclose(per_mask, expected[key])
        assert logged[f"test/{key}"].item() == pytest.approx(per_mask.mean(), abs=1e-6), key
    assert [r["cldice"] for r in rows] == pytest.approx([p["strokes"]["cldice"].mean() for p in predictions])
    assert rows[1]["boundary_iou_1px"] == pytest.approx(predictions[1]["strokes"]["boundary_iou_1px"][0])


def test_the_collection_scores_the_masks_once_when_not_given_them(monkeypatch):
    calls = counting(monkeypatch, samlit.model.metrics)
    truth = torch.zeros(3, 1, 40, 50, dtype=torch.long)
    truth[:, :, 10:30, 10:14] = 1  # a 4 px stroke
    pred = truth.roll(shifts=1, dims=3)  # 1 px to the right: IoU 3/5
    given, scored = stage_metrics("val"), stage_metrics("val")
    given.update(pred, truth, strokes=stroke_scores(pred[:, 0].bool(), truth[:, 0].bool()))
    assert calls == []
    scored.update(pred, truth)
    assert calls == [3]  # once for the 6 stroke metrics, not once each
    assert {k: v.item() for k, v in given.compute().items()} == {k: v.item() for k, v in scored.compute().items()}
    assert scored.compute()["val/iou"].item() == pytest.approx(0.6)

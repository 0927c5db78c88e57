"""Figures: panels side by side, small crops enlarged sharply, the scan rebuilt from the SAM-frame image, which the
run layer reads for the few items a figure draws: the same frame image the step saw; the IoU-vs-clicks curve."""

from __future__ import annotations

import numpy as np
import torch

from samlit.core.images import read_rgb
from samlit.data.frame import to_sam_frame
from samlit.data.sample import InstanceSample
from samlit.run.figures import MIN_SIDE, comparison, mean_iou, save_click_curve, scan_image
from samlit.run.setup import build_datamodule
from samlit.run.testing import with_images
from tests.conftest import FAST


def test_a_small_crop_is_enlarged_by_an_integer_factor():
    image = np.full((50, 80, 3), 255, np.uint8)
    truth = np.zeros((1, 50, 80), bool)
    truth[0, 10:20, 10:40] = True
    picture = comparison(image, truth, {"a": truth, "b": ~truth}, np.array([[10, 10, 40, 20]]))
    factor = -(-MIN_SIDE // 80)
    assert picture.shape == (50 * factor, 3 * 80 * factor, 3) and picture.dtype == np.uint8
    big = comparison(np.zeros((500, 600, 3), np.uint8), np.zeros((0, 500, 600), bool), {})
    assert big.shape == (500, 600, 3)
    assert mean_iou(truth, truth) == 1.0 and mean_iou(~truth, truth) == 0.0


def test_scan_image_is_the_scan_at_its_size():
    ys, xs = np.mgrid[:256, :192]
    image = np.stack([ys, xs, (ys + xs) // 2], axis=-1).astype(np.uint8)  # smooth: resampling keeps it
    sample = InstanceSample(key="k", image=image, masks=np.zeros((0, 256, 192), bool), boxes=np.zeros((0, 4), "f4"))
    group = to_sam_frame(sample, boxes=sample.boxes)
    rebuilt = scan_image({"image": group["image"], "masks": torch.zeros(0, 256, 192, dtype=torch.bool)})
    assert rebuilt.shape == image.shape and np.abs(rebuilt.astype(int) - image).mean() < 1


def test_a_figure_reads_the_frame_image_the_step_saw(compose_cfg):
    """``cache=none`` groups carry the frame image the encoder sees; ``with_images`` reads the same pixels back
    from the files by a prediction's ``source`` (image key, instance, view), for crops, augmented views and pages."""
    datamodule = build_datamodule(compose_cfg(*FAST, "cache=none", "data.augment.views=2").data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    groups = [datamodule.dataset("train", train=True)[(0, i)] for i in range(4)]  # box crops, views drawn
    groups.append(datamodule.dataset("test", train=False, crop="none")[0])  # a page
    assert {g["source"][2] for g in groups[:4]} != {0} and groups[-1]["source"][1] is None
    predictions = [
        {"key": g["key"], "source": g["source"], "masks": torch.from_numpy(g["masks"].unpack())} for g in groups
    ]
    drawn = with_images(predictions, datamodule)
    for group, predicted in zip(groups, drawn, strict=True):
        assert torch.equal(predicted["image"], group["image"]), group["source"]
        assert scan_image(predicted).shape == (*group["original_size"], 3)
    kept = {**predictions[0], "image": torch.zeros(3, 4, 4, dtype=torch.uint8)}
    assert with_images([kept], datamodule)[0]["image"] is kept["image"]  # an image already there is not read again


def test_the_click_curve_is_drawn_for_the_stages_with_clicks(tmp_path):
    """One PNG, atomically (no temp file left); ``None`` and no file when no stage has clicks."""
    clicks = {"miou": [0.5, 0.7, 0.8, 0.9], "noc85": 2.5, "noc90": 3.0, "max_clicks": 3, "n_masks": 4}
    clicks |= {"not_reached_85": 1, "not_reached_90": 2}
    path = tmp_path / "figures" / "clicks.png"
    assert save_click_curve(path, curves={"zero-shot": clicks, "fine-tuned": {**clicks, "miou": [0.8] * 4}}) == path
    picture = read_rgb(path)
    assert picture.ndim == 3 and min(picture.shape[:2]) > 100 and not list(path.parent.glob(".*.tmp"))
    assert save_click_curve(tmp_path / "one.png", curves={"zero-shot": None, "fine-tuned": clicks}).is_file()
    assert save_click_curve(tmp_path / "none.png", curves={"zero-shot": None, "fine-tuned": None}) is None
    assert save_click_curve(tmp_path / "empty.png", curves={}) is None
    assert not (tmp_path / "none.png").exists() and not (tmp_path / "empty.png").exists()

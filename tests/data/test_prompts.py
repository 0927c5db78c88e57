"""Point prompts drawn from the masks: where they land, how they reach SAM's frame and the decoder."""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate

from samlit.data.frame import to_sam_frame
from samlit.data.prompts import sample_points
from samlit.data.sample import InstanceSample
from samlit.model.sam import encode_image
from samlit.run.setup import build_datamodule
from tests.conftest import FAST


def stamps() -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((2, 60, 80), dtype=bool)
    masks[0, 10:30, 10:40:3] = True  # strokes with gaps, like ink
    masks[1, 40:50, 50:70] = True  # solid: its box holds no ink-free pixel
    boxes = np.array([[10, 10, 40, 30], [50, 40, 70, 50]], dtype=np.float32)
    return masks, boxes


def test_positives_on_ink_negatives_in_the_box_off_ink():
    masks, boxes = stamps()
    torch.manual_seed(0)
    coords, labels = sample_points(masks, boxes, positive=3, negative=2)
    assert coords.shape == (2, 5, 2) and labels.shape == (2, 5)
    assert labels[0].tolist() == [1, 1, 1, 0, 0]
    for (x, y), label in zip(coords[0].astype(int), labels[0], strict=True):
        assert masks[0, y, x] == (label == 1) and 10 <= x < 40 and 10 <= y < 30
    assert labels[1].tolist() == [1, 1, 1, -1, -1]  # no background pixel inside a solid stamp's box: padding
    torch.manual_seed(0)
    assert np.array_equal(sample_points(masks, boxes, positive=3, negative=2)[0], coords)  # seeded


def test_points_reach_sams_frame_like_the_boxes():
    masks, boxes = stamps()
    sample = InstanceSample(key="k", image=np.zeros((60, 80, 3), np.uint8), masks=masks, boxes=boxes)
    coords = np.array([[[10, 10]], [[70, 50]]], dtype=np.float32)
    group = to_sam_frame(sample, boxes=boxes, points=(coords, np.ones((2, 1), np.int64)))
    scale = 1024 / 80
    assert torch.allclose(group["point_coords"][:, 0], torch.tensor(coords[:, 0] * scale))
    assert torch.allclose(group["boxes"][:, :2], torch.tensor(boxes[:, :2] * scale))
    assert "point_coords" not in to_sam_frame(sample, boxes=boxes)


def test_training_items_get_points_validation_items_do_not(compose_cfg):
    cfg = compose_cfg(
        *FAST,
        "data.prompts.positive_points=2",
        "data.prompts.negative_points=1",
        "data.prompts.points_probability=1.0",
        "cache=none",
    )
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train = datamodule.train_dataloader().dataset[0]
    assert train["point_coords"].shape == (len(train["boxes"]), 3, 2)
    assert "point_coords" not in datamodule.val_dataloader().dataset[0]


def test_points_change_what_the_decoder_sees(compose_cfg):
    module = instantiate(compose_cfg().module).eval()
    masks, boxes = stamps()
    rng = np.random.default_rng(0)
    sample = InstanceSample(key="k", image=rng.integers(0, 255, (60, 80, 3), np.uint8), masks=masks, boxes=boxes)
    torch.manual_seed(0)
    with_points = to_sam_frame(sample, boxes=boxes, points=sample_points(masks, boxes, positive=2, negative=1))
    box_only = to_sam_frame(sample, boxes=boxes)
    with torch.no_grad():
        with_points["embedding"] = box_only["embedding"] = encode_image(module.sam, box_only["image"])  # one image
        logits_points, _ = module(with_points)
        logits_box, _ = module(box_only)
    assert logits_points.shape == logits_box.shape == (2, 256, 256)
    assert not torch.allclose(logits_points, logits_box)

"""ONNX export of the prompt encoder + mask decoder: onnxruntime gives what ``SamPredictor.predict(box=...,
multimask_output=False)`` gives (mask token 0, the one samlit trains), where stock ``SamOnnxModel`` does not; and,
for corrective clicks beside a box with a mask input, what ``predict(point_coords, point_labels, box, mask_input)``
gives."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel

from samlit.model.onnx_decoder import INPUT_NAMES, OUTPUT_NAMES, onnx_inputs
from samlit.model.sam import build_sam
from samlit.run.export import cli, export_sam
from samlit.run.onnx_export import export_onnx, predictor_on, verify_onnx

# Landscape and portrait (the crop of the padding must follow each), small: the tiny encoder works at 1024 anyway.
SIZES = ((96, 128), (150, 100))
BOXES = np.array([[5, 8, 60, 70], [20, 10, 90, 40], [0, 0, 99, 95], [40, 30, 55, 88]], dtype=np.float32)


@pytest.fixture(scope="module")
def sam() -> Sam:
    """The tiny SAM, random weights, its decoder moved off the initialisation like a fine-tune's."""
    torch.manual_seed(0)
    model = build_sam(model_type="tiny")
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def embeddings(sam: Sam) -> dict[tuple[int, int], torch.Tensor]:
    """Image embeddings (1, 256, 64, 64) of synthetic scans: white pages with dark blobs, one per size."""
    rng = np.random.default_rng(0)
    out = {}
    for h, w in SIZES:
        image = np.full((h, w, 3), 235, np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
            image[y : y + 20, x : x + 20] = rng.integers(0, 120, size=3)
        predictor = SamPredictor(sam)
        predictor.set_image(image)
        out[(h, w)] = predictor.features
    return out


@pytest.fixture(scope="module")
def onnx_file(sam: Sam, tmp_path_factory) -> Path:
    path, figures = export_onnx(sam, tmp_path_factory.mktemp("onnx") / "sam_tiny_decoder.onnx")
    assert figures["mask_agreement"] >= 0.999 and figures["max_logit_diff"] < 1e-3, figures  # the built-in check
    return path


def test_onnx_matches_sam_predictor_box_prompts(sam, embeddings, onnx_file):
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES) and [o.name for o in graph.output] == list(OUTPUT_NAMES)
    assert [d.dim_param or d.dim_value for d in graph.input[1].type.tensor_type.shape.dim] == [1, "num_points", 2]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 256, 64, 64]  # from the model
    assert not list(onnx_file.parent.glob(".*.tmp"))  # atomic write left no temp file
    for size, embedding in embeddings.items():
        # boxes alone (clicks=0): the export's own check (the fixture) and the tests below take the corrections
        figures = verify_onnx(sam, onnx_file, embedding=embedding, boxes=BOXES, original_size=size, clicks=0)
        # Same ops in another runtime: logits agree to float32 noise (~5e-5 measured, from the resizes). A pixel
        # whose mask differs has logits of opposite signs, so |logit| <= max_logit_diff there: only pixels within
        # that noise of the 0 threshold can flip, hence agreement >= 0.999 rather than == 1.
        assert figures["mask_agreement"] >= 0.999, figures
        assert figures["max_logit_diff"] < 1e-3 and figures["max_iou_diff"] < 1e-4, figures


def test_stock_sam_onnx_model_returns_another_mask_for_a_box(sam, embeddings):
    """The pitfall: for a box (two points, labels 2 and 3) stock ``select_masks`` gives token 0 a -500 handicap,
    so ``SamOnnxModel(return_single_mask=True)`` returns a multimask token, not the trained single mask."""
    stock = SamOnnxModel(sam, return_single_mask=True)
    differing = 0
    for size, embedding in embeddings.items():
        predictor = predictor_on(sam, embedding=embedding, original_size=size)
        for box in BOXES:
            trained, iou, _ = predictor.predict(box=box, multimask_output=False, return_logits=True)
            feed = onnx_inputs(embedding=embedding.numpy(), original_size=size, image_size=1024, box=box)
            masks, scores, _ = stock(*(torch.from_numpy(feed[name]) for name in INPUT_NAMES))
            assert not np.isclose(scores.item(), iou.item(), atol=1e-4)  # a different token's IoU head
            differing += int(((masks[0].numpy() > 0) != (trained > 0)).any())
    assert differing >= 1


def test_onnx_point_prompts_and_padded_box(sam, embeddings, onnx_file):
    """Dynamic point count: points with the padding point match ``SamPredictor``; a box with a padding point (as
    AnyLabeling sends it) runs too and still gives a full-size single mask."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    size, embedding = next(iter(embeddings.items()))
    predictor = predictor_on(sam, embedding=embedding, original_size=size)
    points, labels = np.array([[30, 40], [70, 20], [10, 80]], np.float32), np.array([1, 0, 1], np.float32)
    trained, _, _ = predictor.predict(
        point_coords=points, point_labels=labels, multimask_output=False, return_logits=True
    )
    feed = onnx_inputs(embedding=embedding.numpy(), original_size=size, image_size=1024, points=points, labels=labels)
    assert feed["point_coords"].shape == (1, 4, 2)
    masks, _, low_res = session.run(None, feed)
    assert np.abs(masks[0] - trained).max() < 1e-3
    feed = onnx_inputs(embedding=embedding.numpy(), original_size=size, image_size=1024, box=BOXES[0])
    feed["point_coords"] = np.concatenate([feed["point_coords"], np.zeros((1, 1, 2), np.float32)], axis=1)
    feed["point_labels"] = np.concatenate([feed["point_labels"], -np.ones((1, 1), np.float32)], axis=1)
    masks, iou, low_res = session.run(None, feed)
    assert masks.shape == (1, 1, *size) and iou.shape == (1, 1) and low_res.shape == (1, 1, 256, 256)


def test_onnx_takes_clicks_beside_a_box_and_a_mask_input(sam, embeddings, onnx_file):
    """A correction as a labeling tool sends it: a positive and a negative click before the box's corners, the box's
    own ``low_res_masks`` as ``mask_input`` (``has_mask_input`` 1): onnxruntime gives ``SamPredictor.predict(
    point_coords, point_labels, box, mask_input, multimask_output=False)``, and the mask input counts."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    points, labels = np.array([[30, 40], [12, 14]], np.float32), np.array([1, 0])
    for size, embedding in embeddings.items():
        predictor = predictor_on(sam, embedding=embedding, original_size=size)
        _, _, low_res = predictor.predict(box=BOXES[0], multimask_output=False, return_logits=True)
        trained, iou, trained_low = predictor.predict(
            point_coords=points,
            point_labels=labels,
            box=BOXES[0],
            mask_input=low_res,
            multimask_output=False,
            return_logits=True,
        )
        prompt = {"box": BOXES[0], "points": points, "labels": labels}
        feed = onnx_inputs(
            embedding=embedding.numpy(), original_size=size, image_size=1024, **prompt, mask_input=low_res
        )
        assert feed["point_labels"].tolist() == [[1, 0, 2, 3]] and feed["has_mask_input"].tolist() == [1.0]
        assert feed["mask_input"].shape == (1, 1, 256, 256) and np.array_equal(feed["mask_input"][0], low_res)
        masks, onnx_iou, onnx_low = session.run(None, feed)
        assert np.abs(masks[0] - trained).max() < 1e-3 and np.abs(onnx_low[0] - trained_low).max() < 1e-3
        assert np.abs(onnx_iou[0] - iou).max() < 1e-4
        without, _, _ = session.run(
            None, onnx_inputs(embedding=embedding.numpy(), original_size=size, image_size=1024, **prompt)
        )
        assert np.abs(without - masks).max() > 1e-2  # the mask prompt reached the decoder


def test_verify_onnx_checks_the_mask_input(sam, embeddings, onnx_file):
    """``verify_onnx`` checks clicks + a mask input besides boxes: a model whose mask-prompt path differs from the
    file's agrees on boxes alone (the mask path is multiplied by ``has_mask_input`` = 0) and is caught with clicks."""
    import copy

    other = copy.deepcopy(sam)
    with torch.no_grad():
        for p in other.prompt_encoder.mask_downscaling.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    size, embedding = next(iter(embeddings.items()))
    boxes_only = verify_onnx(other, onnx_file, embedding=embedding, boxes=BOXES[:1], original_size=size, clicks=0)
    assert boxes_only["max_logit_diff"] < 1e-3, boxes_only
    with_clicks = verify_onnx(other, onnx_file, embedding=embedding, boxes=BOXES[:1], original_size=size)
    assert with_clicks["max_logit_diff"] > 1e-2, with_clicks


def test_onnx_inputs_refuse_what_does_not_fit():
    embedding = np.zeros((1, 256, 64, 64), np.float32)
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        onnx_inputs(embedding=embedding, original_size=(96, 128), image_size=1024, points=np.zeros((2, 2)), labels=[1])
    with pytest.raises(ValueError, match=r"mask_input is \(64, 64\), not \(256, 256\)"):
        onnx_inputs(
            embedding=embedding, original_size=(96, 128), image_size=1024, box=BOXES[0], mask_input=np.zeros((64, 64))
        )
    fed = onnx_inputs(embedding=embedding, original_size=(96, 128), image_size=1024, box=BOXES[0])
    assert fed["has_mask_input"].tolist() == [0.0] and not fed["mask_input"].any()  # no mask prompt


def fake_run(root: Path, sam: Sam) -> Path:
    """A train.py run dir as the export CLI reads it: its config, base weights (the frozen encoders) and a
    Lightning checkpoint holding ``sam``'s decoder."""
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    weights = export_sam(build_sam(model_type="tiny"), root / "base.pth")
    decoder = {f"sam.mask_decoder.{k}": v for k, v in sam.mask_decoder.state_dict().items()}
    torch.save({"state_dict": decoder}, run / "checkpoints" / "last.ckpt")
    (run / "config_resolved.yaml").write_text(f"model:\n  model_type: tiny\n  weights: {weights}\n")
    return run


def test_cli_onnx_writes_a_checked_file(tmp_path, sam, capsys):
    run = fake_run(tmp_path, sam)
    assert cli([str(run), "--onnx"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    onnx_path = run / "export" / "sam_tiny_decoder.onnx"
    assert lines[:3] == [str(run / "export" / n) for n in ("sam_tiny_finetuned.pth", "sam_tiny_decoder.pth")] + [
        str(onnx_path)
    ]
    figures = re.search(r"mask agreement ([\d.]+), max logit diff ([\d.e+-]+)", lines[3])
    assert lines[3].startswith("onnx check vs SamPredictor") and figures, lines[3]
    assert float(figures[1]) >= 0.999 and float(figures[2]) < 1e-3, lines[3]
    assert onnx_path.is_file() and not list(onnx_path.parent.glob(".*.tmp"))


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert cli([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no checkpoint" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the onnx extra not installed
    assert cli([str(tmp_path / "nowhere"), "--onnx"]) == 2
    assert capsys.readouterr().err == "error: --onnx needs the onnx extra: pip install -e '.[onnx]'\n"


def test_cli_never_overwrites_an_export_it_did_not_write(tmp_path, sam, capsys):
    """Run again: files holding the same tensors are kept; other weights (another checkpoint) are refused, and
    the files already there stay as they were."""
    run = fake_run(tmp_path, sam)
    assert cli([str(run)]) == 0
    full = run / "export" / "sam_tiny_finetuned.pth"
    before = full.read_bytes()
    assert cli([str(run)]) == 0  # the same weights: nothing to do
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 1
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert cli([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {full} already exists and holds other weights") and "--out" in err
    assert full.read_bytes() == before
    assert cli([str(run), "--out", str(tmp_path / "new")]) == 0


def test_onnx_matches_sam_predictor_on_the_test_split(sam, onnx_file, compose_cfg):
    """The box prompts of a run's test split (debug=fast, whole scans as a labeling tool sees them), each scan
    encoded by the same model: onnxruntime's masks are SamPredictor's."""
    from samlit.data.sample import with_ink
    from samlit.run.setup import build_datamodule

    datamodule = build_datamodule(compose_cfg("debug=fast").data)
    datamodule.prepare_data()
    datamodule.setup("test")
    checked = 0
    for record in datamodule.splits["test"]:
        sample = with_ink(datamodule.source.read(record))
        predictor = SamPredictor(sam)
        predictor.set_image(sample.image)
        figures = verify_onnx(
            sam, onnx_file, embedding=predictor.features, boxes=sample.boxes, original_size=sample.image.shape[:2]
        )
        assert figures["mask_agreement"] >= 0.999 and figures["max_logit_diff"] < 1e-3, (record.key, figures)
        checked += len(sample.boxes)
    assert checked >= 2

"""HQ mode end to end, as a user runs it: ``python train.py model.hq=true`` trains the HQ parts on prepared
features, its export loads in stock ``segment_anything_hq`` and gives ``predict.py``'s masks, ``eval.py`` and
``python -m samlit.export`` take the run's files."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from samlit.model.hq import HQ_PARTS
from samlit.model.sam import build_sam
from samlit.run.export import export_sam, load_exported
from samlit.run.predict import predict_masks
from tests.conftest import FAST, REPO
from tests.model.test_hq import BOXES, hq_package, image, stock_tiny_hq
from tests.run.test_train import only_run_dir, run_train


def stock_hq_masks(sam, picture: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Masks of stock ``segment_anything_hq.SamPredictor(sam).predict(box=..., hq_token_only=True)``, box by box."""
    package, _ = hq_package()
    predictor = package.SamPredictor(sam)
    predictor.set_image(picture)
    masks = [predictor.predict(box=box, multimask_output=False, hq_token_only=True)[0][0] for box in boxes]
    return np.stack(masks)


@pytest.mark.slow
def test_hq_run_export_loads_in_stock_hq_sam_and_gives_predicts_masks(tmp_path):
    result = run_train(tmp_path, *FAST, "model.hq=true")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["hq"] == {"mask": "hq", "train": "hq", "zero_shot_mask": "sam"}
    assert metrics["export"] == "export/sam_hq_tiny_finetuned.pth"
    assert "HQ mode (`model.hq=true`): the mask is the HQ token's" in (run_dir / "report.md").read_text()
    assert metrics["store"]["encoded_in_steps"] == 0  # the early feature was prepared with the embedding
    checkpoint = torch.load(next((run_dir / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)
    assert any(".hf_token." in key for key in checkpoint["state_dict"])

    export = run_dir / "export" / "sam_hq_tiny_finetuned.pth"
    stock = stock_tiny_hq(export)  # stock segment-anything-hq's builder, tiny's numbers
    state = torch.load(export, weights_only=True)
    assert stock.state_dict().keys() == state.keys()
    assert all(torch.equal(stock.state_dict()[k], v) for k, v in state.items())
    picture = image()
    ours, _ = predict_masks(build_sam(model_type="tiny", weights=str(export), hq=True), picture, BOXES)
    assert np.array_equal(ours, stock_hq_masks(stock, picture, BOXES))

    # predict.py (the run's crop mode, read from its config) writes the masks predict_masks gives in that frame
    cv2.imwrite(str(tmp_path / "a.png"), picture[:, :, ::-1])
    command = [sys.executable, str(REPO / "predict.py"), f"paths.root_dir={tmp_path}", f"output={tmp_path}/out"]
    box = ",".join(str(int(v)) for v in BOXES[0])
    overrides = [f"image={tmp_path}/a.png", f"box=[{box}]", f"model.weights={export}"]  # model.hq: the run's
    predicted = subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    written = cv2.imread(str(tmp_path / "out" / "a_mask_0.png"), cv2.IMREAD_UNCHANGED) > 0
    sam = build_sam(model_type="tiny", weights=str(export), hq=True)
    expected, _ = predict_masks(sam, picture, BOXES[:1], crop=metrics["frame"]["crop"], crop_margin=0.1)
    assert np.array_equal(written, expected[0])

    assert "model.hq=True model.hq_token_only=True" in predicted.stdout + predicted.stderr

    # eval.py with the export reproduces the run's fine-tuned numbers (in the run's HQ mode, without model.hq=true)
    command = [sys.executable, str(REPO / "eval.py"), f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    evaluated = subprocess.run(
        [*command, *FAST, f"model.weights={export}"], capture_output=True, text=True, cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (eval_dir,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    scores = json.loads((eval_dir / "metrics.json").read_text())
    for key in ("iou", "dice", "n_masks"):
        assert scores[key] == pytest.approx(metrics["fine_tuned"][key], abs=1e-6), key

    # the export CLI rebuilds the HQ files from the run's checkpoint
    out = tmp_path / "rebuilt"
    subprocess.run(
        [sys.executable, "-m", "samlit.export", str(run_dir), "--out", str(out), "--weights", str(export)],
        check=True,
        capture_output=True,
    )
    rebuilt = torch.load(out / "sam_hq_tiny_finetuned.pth", weights_only=True)
    assert rebuilt.keys() == state.keys() and all(torch.equal(rebuilt[k], state[k]) for k in state)
    assert (out / "sam_hq_tiny_decoder.pth").is_file()
    onnx = subprocess.run(
        [sys.executable, "-m", "samlit.export", str(run_dir), "--out", str(tmp_path / "onnx"), "--onnx"],
        capture_output=True,
        text=True,
    )
    (line,) = onnx.stderr.strip().splitlines()
    assert onnx.returncode == 2 and "--onnx is not available for an HQ run" in line


@pytest.mark.slow
def test_exported_hq_vit_b_in_stock_hq_registry_matches_samlit(tmp_path):
    """vit_b (random base weights, perturbed HQ parts): ``segment_anything_hq.sam_model_registry["vit_b"]`` loads
    the export and its ``SamPredictor(...).predict(..., hq_token_only=True)`` gives samlit's masks."""
    torch.manual_seed(0)
    sam = build_sam(model_type="vit_b", hq=True)
    with torch.no_grad():
        for part in HQ_PARTS:
            for p in getattr(sam.mask_decoder, part).parameters():
                p.add_(torch.randn_like(p) * 0.05)
    path = export_sam(sam, tmp_path / "sam_hq_vit_b_finetuned.pth")
    stock = load_exported(path, model_type="vit_b", hq=True)  # segment_anything_hq.sam_model_registry["vit_b"]
    assert type(stock).__module__.startswith("segment_anything_hq")
    picture = image()
    ours, _ = predict_masks(build_sam(model_type="vit_b", weights=str(path), hq=True), picture, BOXES)
    assert ours.any() and np.array_equal(ours, stock_hq_masks(stock, picture, BOXES))

"""Export round trip: the exported file reloads into a fresh model that gives identical outputs."""

from __future__ import annotations

import pytest
import torch
from segment_anything import SamPredictor

from samlit.model.sam import build_sam
from samlit.run.export import export_sam, load_exported, verify_export


def perturb_decoder(sam) -> None:
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)


def test_tiny_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    sam = build_sam(model_type="tiny")
    perturb_decoder(sam)
    path = export_sam(sam, tmp_path / "export" / "sam_tiny_finetuned.pth")
    state = torch.load(path, weights_only=True)
    assert set(state) == set(sam.state_dict()) and all(type(v) is torch.Tensor for v in state.values())
    verify_export(sam, path, model_type="tiny")

    fresh = load_exported(path, model_type="tiny")
    image = (torch.rand(120, 90, 3) * 255).to(torch.uint8).numpy()
    box = torch.tensor([10.0, 20.0, 60.0, 100.0]).numpy()
    outputs = []
    for model in (sam, fresh):
        predictor = SamPredictor(model)
        predictor.set_image(image)
        masks, scores, logits = predictor.predict(box=box, multimask_output=False)
        outputs.append((masks, scores, logits))
    assert (outputs[0][0] == outputs[1][0]).all()
    assert torch.equal(torch.from_numpy(outputs[0][2]), torch.from_numpy(outputs[1][2]))


def test_verify_export_catches_a_wrong_file(tmp_path):
    torch.manual_seed(0)
    sam = build_sam(model_type="tiny")
    path = export_sam(sam, tmp_path / "sam.pth")
    perturb_decoder(sam)  # the model moved on after the export
    with pytest.raises(RuntimeError, match="differs from the trained model at mask_decoder"):
        verify_export(sam, path, model_type="tiny")
    state = torch.load(path, weights_only=True)
    state["mask_decoder.extra"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="does not load into a stock tiny"):
        verify_export(sam, path, model_type="tiny")


@pytest.mark.slow
def test_vit_b_export_loads_with_stock_registry(tmp_path):
    sam = build_sam(model_type="vit_b")
    perturb_decoder(sam)
    path = export_sam(sam, tmp_path / "sam_vit_b_finetuned.pth")
    verify_export(sam, path, model_type="vit_b")  # keys/shapes against segment_anything's vit_b, values equal
    stock = load_exported(path, model_type="vit_b")  # segment_anything.sam_model_registry["vit_b"](checkpoint=...)
    assert torch.equal(stock.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)

"""HQ mode (``model.hq=true``): HQ-SAM's decoder on SAM's frozen weights gives what stock ``segment_anything_hq``
gives; what trains, what loads, what the zero-shot pass reports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from samlit.core.errors import SamlitError
from samlit.model.hq import HQ_PARTS, hq_features, sam_token_while_fresh
from samlit.model.sam import build_sam, decode_prompt_batch, decode_prompts, encode_features

BOXES = np.array([[20, 30, 120, 110], [150, 60, 260, 170]], dtype=np.float32)


def hq_package():
    with warnings.catch_warnings():  # timm's deprecated import paths
        warnings.simplefilter("ignore")
        import segment_anything_hq
        from segment_anything_hq.build_sam import _build_sam
    return segment_anything_hq, _build_sam


def stock_tiny_hq(path) -> torch.nn.Module:
    """The tiny model as stock segment-anything-hq builds it (its builder with tiny's encoder numbers), loaded from
    ``path`` the way its registry does (``strict=False``: so the test also compares every key)."""
    _, build = hq_package()
    return build(
        encoder_embed_dim=96, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1], checkpoint=path
    )


def image() -> np.ndarray:
    ys, xs = np.mgrid[:200, :300]
    picture = np.full((200, 300, 3), 235, np.uint8)
    picture[np.hypot(xs - 70, ys - 70) < 35] = (180, 40, 60)
    picture[np.abs(ys - 115) < 3] = (20, 20, 120)  # a thin stroke
    return picture


@pytest.fixture(scope="module")
def tuned_hq():
    """A tiny HQ model whose HQ parts and decoder are perturbed (so every path is exercised by non-trivial values)."""
    torch.manual_seed(0)
    sam = build_sam(model_type="tiny", hq=True)
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return sam


def test_hq_train_chooses_what_trains():
    hq_only = build_sam(model_type="tiny", hq=True, hq_train="hq")
    trains = {n.split(".")[1] for n, p in hq_only.named_parameters() if p.requires_grad}
    assert trains == set(HQ_PARTS)
    whole = build_sam(model_type="tiny", hq=True, hq_train="hq+decoder", hq_token_only=False)
    trains = {n for n, p in whole.named_parameters() if p.requires_grad}
    assert trains == {n for n, _ in whole.named_parameters() if n.startswith("mask_decoder.")}
    hq_mask = build_sam(model_type="tiny", hq=True, hq_train="hq+decoder")  # SAM's mask MLPs shape no output
    trains = {n for n, p in hq_mask.named_parameters() if p.requires_grad}
    assert trains == {
        n for n, _ in hq_mask.named_parameters() if n.startswith("mask_decoder.") and "hypernetworks_mlps" not in n
    }
    plain = build_sam(model_type="tiny")
    assert not any(p.requires_grad for p in [*plain.image_encoder.parameters(), *plain.prompt_encoder.parameters()])
    with pytest.raises(SamlitError, match=r"model.hq_train='all' is unknown; choose one of hq, hq\+decoder"):
        build_sam(model_type="tiny", hq=True, hq_train="all")


def test_early_feature_is_hq_sams_interm_embedding(tuned_hq, tmp_path):
    """The early feature samlit prepares is what HQ-SAM's own encoder returns as ``interm_embeddings[0]``."""
    torch.save(tuned_hq.state_dict(), tmp_path / "hq.pth")
    stock = stock_tiny_hq(tmp_path / "hq.pth")
    frame = torch.randint(0, 255, (3, 1024, 768), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = encode_features(tuned_hq, frame)
        embedding, interm = stock.image_encoder(stock.preprocess(frame[None].float()))
    assert ours["interm_embedding"].shape == (1, 64, 64, 96)
    assert torch.equal(ours["embedding"], embedding) and torch.equal(ours["interm_embedding"], interm[0])


@pytest.mark.parametrize("hq_token_only", [True, False])
def test_decode_matches_stock_hq_sam_predictor(tuned_hq, tmp_path, hq_token_only):
    """``decode_prompts`` (per image) and ``decode_prompt_batch`` give stock ``SamPredictor.predict_torch(...,
    hq_token_only=...)``'s low-res logits and IoU predictions."""
    torch.save(tuned_hq.state_dict(), tmp_path / "hq.pth")
    package, _ = hq_package()
    predictor = package.SamPredictor(stock_tiny_hq(tmp_path / "hq.pth"))
    picture = image()
    predictor.set_image(picture)
    boxes = predictor.transform.apply_boxes_torch(torch.from_numpy(BOXES), picture.shape[:2])
    sam = build_sam(model_type="tiny", hq=True, hq_token_only=hq_token_only, weights=str(tmp_path / "hq.pth"))
    with torch.no_grad():
        _, stock_iou, stock_logits = predictor.predict_torch(
            None, None, boxes=boxes, multimask_output=False, hq_token_only=hq_token_only
        )
        features = {"embedding": predictor.features, "interm_embedding": predictor.interm_features[0]}
        logits, iou = decode_prompts(sam, boxes=boxes, **features)
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        fused = hq_features(sam.mask_decoder, **features).expand(2, -1, -1, -1)
        batch_logits, batch_iou = decode_prompt_batch(
            sam, embeddings=features["embedding"].expand(2, -1, -1, -1), sparse=sparse, dense=dense, fused=fused
        )
    assert torch.allclose(logits, stock_logits[:, 0], atol=1e-5) and torch.allclose(iou, stock_iou[:, 0], atol=1e-6)
    assert torch.allclose(batch_logits, logits, atol=1e-5) and torch.allclose(batch_iou, iou, atol=1e-6)


def test_weights_sam_or_hq_sam_and_the_errors(tuned_hq, tmp_path):
    """SAM weights load into an HQ model (HQ parts fresh); an HQ-SAM checkpoint loads whole; HQ weights into a
    plain model, or a file that fits neither, are one-line errors."""
    plain = build_sam(model_type="tiny")
    torch.save(plain.state_dict(), tmp_path / "sam.pth")
    torch.save(tuned_hq.state_dict(), tmp_path / "hq.pth")
    from_sam = build_sam(model_type="tiny", hq=True, weights=str(tmp_path / "sam.pth"))
    assert from_sam.mask_decoder.hq_fresh
    for key, value in plain.state_dict().items():
        assert torch.equal(from_sam.state_dict()[key], value), key
    from_hq = build_sam(model_type="tiny", hq=True, weights=str(tmp_path / "hq.pth"))
    assert not from_hq.mask_decoder.hq_fresh
    for key, value in tuned_hq.state_dict().items():
        assert torch.equal(from_hq.state_dict()[key], value), key
    with pytest.raises(SamlitError, match=r"holds HQ-SAM weights \(mask_decoder.hf_token.weight...\); pass model.hq"):
        build_sam(model_type="tiny", weights=str(tmp_path / "hq.pth"))
    decoder_only = {f"mask_decoder.{k}": v for k, v in tuned_hq.mask_decoder.state_dict().items()}
    decoder_only.pop("mask_decoder.hf_mlp.layers.0.bias")
    torch.save(decoder_only, tmp_path / "broken.pth")
    with pytest.raises(SamlitError, match=r"model.decoder_weights=.*broken.pth is not a SAM mask decoder for model="):
        build_sam(model_type="tiny", hq=True, decoder_weights=str(tmp_path / "broken.pth"))


def test_zero_shot_reports_sams_own_token_while_the_hq_token_is_fresh(tuned_hq, tmp_path):
    """With fresh HQ parts the zero-shot pass decodes SAM's mask token 0: what the plain model with the same base
    weights gives. Outside the context (and once HQ parts are loaded) the HQ mask comes back."""
    plain = build_sam(model_type="tiny")
    torch.save(plain.state_dict(), tmp_path / "sam.pth")
    sam = build_sam(model_type="tiny", hq=True, weights=str(tmp_path / "sam.pth"))
    frame = torch.from_numpy(image()).permute(2, 0, 1)
    boxes = torch.from_numpy(BOXES)
    with torch.no_grad():
        features = encode_features(sam, frame)
        with sam_token_while_fresh(sam.mask_decoder) as swapped:
            zero_shot, _ = decode_prompts(sam, boxes=boxes, **features)
        hq, _ = decode_prompts(sam, boxes=boxes, **features)
        sams, _ = decode_prompts(plain, boxes=boxes, embedding=features["embedding"])
    assert swapped and torch.allclose(zero_shot, sams, atol=1e-5) and not torch.allclose(hq, sams, atol=1e-2)
    with sam_token_while_fresh(tuned_hq.mask_decoder) as swapped:
        assert swapped  # tuned_hq was built fresh and only perturbed in place: still "fresh" by its own account
    loaded = build_sam(model_type="tiny", hq=True, weights=str(tmp_path / "sam.pth"))
    loaded.mask_decoder.hq_fresh = False
    with sam_token_while_fresh(loaded.mask_decoder) as swapped:
        assert not swapped and loaded.mask_decoder.mask_output == "hq"


@pytest.mark.parametrize("hq_train", ["hq", "hq+decoder"])
@pytest.mark.parametrize("hq_token_only", [True, False])
def test_every_trainable_parameter_gets_a_gradient_and_the_frozen_iou_head_trains_nothing(hq_train, hq_token_only):
    """DDP (``find_unused_parameters=false``) needs a gradient on every trainable parameter; with the HQ token's
    mask alone SAM's mask-token MLPs shape nothing, so they stay frozen. With ``hq_train=hq`` the IoU head is frozen:
    its loss term is logged but trains nothing (it would reach the HQ token through the transformer)."""
    from samlit.model.losses import DiceLoss, SamLoss
    from samlit.model.module import SamFineTuner

    torch.manual_seed(0)
    sam = build_sam(model_type="tiny", hq=True, hq_train=hq_train, hq_token_only=hq_token_only)
    module = SamFineTuner(sam=sam, loss=SamLoss(mask=DiceLoss()), optimizer=torch.optim.Adam)
    target = torch.zeros(1, 256, 256)
    target[0, 80:120, 60:200] = 1.0
    group = {
        "key": "a",
        "boxes": torch.tensor([[200.0, 300.0, 820.0, 500.0]]),
        "low_res_targets": target,
        "embedding": torch.randn(1, 256, 64, 64),
        "interm_embedding": torch.randn(1, 64, 64, 96),
    }
    terms, _ = module.model_step([group], "train")
    terms["loss"].backward()
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(p.grad is not None for p in trainable.values()), [
        n for n, p in trainable.items() if p.grad is None
    ]
    assert module.iou_head_trains == (hq_train == "hq+decoder")
    assert terms["loss_iou"].requires_grad == (hq_train == "hq+decoder")

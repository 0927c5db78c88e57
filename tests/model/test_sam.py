"""The SAM builder and strict, weights-only loading."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import Sam

from samlit.core.errors import SamlitError
from samlit.model.sam import ENCODERS, build_sam, detect_model_type


def test_tiny_keeps_sams_frame_and_decoder():
    sam = build_sam(model_type="tiny", weights="random")
    assert isinstance(sam, Sam) and not sam.training
    with torch.no_grad():
        emb = sam.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert emb.shape == (1, 256, 64, 64)
    # decoder and prompt encoder are SAM's: same parameter shapes as a vit_b built by segment-anything
    from segment_anything import sam_model_registry

    stock = sam_model_registry["vit_b"]().state_dict()
    ours = sam.state_dict()
    for key in (k for k in stock if k.startswith(("mask_decoder.", "prompt_encoder."))):
        assert ours[key].shape == stock[key].shape, key


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_big_models_build_random(model_type):
    with torch.device("meta"):  # the architecture without 2.5 GB of random vit_h weights
        state = build_sam(model_type=model_type, weights="random").state_dict()
    assert detect_model_type(state) == model_type
    assert state["image_encoder.patch_embed.proj.weight"].shape[0] == ENCODERS[model_type].embed_dim


def test_file_weights_load_strictly(tmp_path):
    source = build_sam(model_type="tiny")
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    loaded = build_sam(model_type="tiny", weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_wrong_model_file_names_both(tmp_path):
    path = tmp_path / "vit_b.pth"
    torch.save(build_sam(model_type="vit_b").state_dict(), path)
    with pytest.raises(SamlitError, match=r"holds a vit_b checkpoint but model=tiny"):
        build_sam(model_type="tiny", weights=str(path))


def test_bad_weights_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(SamlitError, match="no such file"):
        build_sam(model_type="tiny", weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(SamlitError, match="not a readable"):
        build_sam(model_type="tiny", weights=str(junk))
    partial = tmp_path / "partial.pth"
    state = build_sam(model_type="tiny").state_dict()
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, partial)
    with pytest.raises(SamlitError, match="does not fit model=tiny"):
        build_sam(model_type="tiny", weights=str(partial))
    with pytest.raises(SamlitError, match="unknown"):
        build_sam(model_type="vit_x")

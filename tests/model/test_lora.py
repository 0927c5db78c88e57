"""LoRA adapters (``samlit.model.lora``): what trains per option, the merge into stock weights, checkpoints that hold
what trains, and one-line errors for bad settings."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import save_file

from samlit.core.errors import SamlitError, find_user_error
from samlit.model.lora import (
    LoraSpec,
    adapter_metadata,
    adapter_state,
    apply_lora,
    load_adapters,
    load_trained,
    parameter_counts,
    spec_from_config,
    stock_state_dict,
)
from samlit.model.sam import build_sam, decode_prompts, encode_features

BOX = torch.tensor([[100.0, 120.0, 420.0, 380.0]])


def image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 1024, 1024), generator=generator, dtype=torch.uint8)


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_sam(model_type="tiny")


def trained_names(sam) -> set[str]:
    return {name for name, p in sam.named_parameters() if p.requires_grad}


def perturb_adapters(sam, scale: float = 0.5) -> None:
    """Give every adapter a non-zero update (B starts at zero: an adapted model starts equal to its base)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)


def outputs(sam, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        embedding = encode_features(sam.eval(), pixels)["embedding"]
        logits, _ = decode_prompts(sam, embedding=embedding, boxes=BOX)
    return embedding, logits


@pytest.mark.parametrize(
    "option,encoder,decoder_own",
    [("decoder_lora", False, False), ("encoder_lora", True, True), ("lora", True, False)],
)
def test_each_option_trains_its_adapters_and_says_what_else_trains(compose_cfg, option, encoder, decoder_own):
    """The config group's options, composed as a run does: adapters where they say, the decoder's own weights only
    with ``train_decoder``, nothing else; the encoder's base weights never."""
    spec = instantiate(compose_cfg(f"peft={option}").peft)
    sam = apply_lora(tiny(), spec)
    names = trained_names(sam)
    adapters = {n for n in names if ".lora_" in n}
    assert any(n.startswith("image_encoder.") for n in adapters) == encoder
    assert any(n.startswith("mask_decoder.") for n in adapters) == (option != "encoder_lora")
    assert all(".lora_" in n for n in names if n.startswith("image_encoder."))
    assert ("mask_decoder.iou_token.weight" in names) == decoder_own
    assert not any(n.startswith("prompt_encoder.") for n in names)
    if option == "decoder_lora":  # q and v of each of the decoder's 7 attentions (2 layers x 3 + the final one)
        assert len({n.rsplit(".lora_", 1)[0] for n in adapters}) == 14
        assert {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[1] for n in adapters} == {"q_proj", "v_proj"}


def test_none_changes_nothing(compose_cfg):
    spec = instantiate(compose_cfg().peft)
    sam = tiny()
    before = trained_names(sam)
    assert not spec.enabled and apply_lora(sam, spec) is sam and trained_names(sam) == before


def test_adapters_start_as_the_base_model_and_merge_into_stock_weights():
    """B = 0 at the start: the same outputs as the base; after training (here: a random B) the merged state dict has
    exactly the stock keys, and a plain model loaded with it gives the adapted model's outputs."""
    pixels = image()
    base = tiny()
    adapted = apply_lora(tiny(), LoraSpec(decoder_target_modules=("q_proj", "v_proj"), encoder_target_modules="qkv"))
    for ours, theirs in zip(outputs(adapted, pixels), outputs(base, pixels), strict=True):
        assert torch.equal(ours, theirs)
    assert stock_state_dict(adapted).keys() == base.state_dict().keys()

    perturb_adapters(adapted)
    merged = stock_state_dict(adapted)
    assert merged.keys() == base.state_dict().keys()
    plain = build_sam(model_type="tiny")
    plain.load_state_dict(merged, strict=True)
    changed_embedding, changed_logits = outputs(adapted, pixels)
    embedding, logits = outputs(plain, pixels)
    assert not torch.allclose(changed_embedding, outputs(base, pixels)[0], atol=1e-3)  # the adapters do something
    assert torch.allclose(embedding, changed_embedding, atol=1e-4)
    assert torch.allclose(logits, changed_logits, atol=1e-3)
    # the merge leaves the adapted model as it was
    assert any(".lora_A." in k for k in adapted.state_dict())


def test_blocks_restrict_encoder_adapters_and_unknown_ones_are_one_line():
    sam = apply_lora(tiny(), LoraSpec(encoder_target_modules=("qkv", "lin1"), blocks=[1]))
    adapted = {n.rsplit(".lora_", 1)[0] for n in trained_names(sam) if ".lora_" in n}
    assert adapted == {"image_encoder.blocks.1.attn.qkv", "image_encoder.blocks.1.mlp.lin1"}
    with pytest.raises(SamlitError, match=r"peft\.blocks: block 10 is outside this encoder's 2 blocks"):
        apply_lora(tiny(), LoraSpec(encoder_target_modules=("qkv",), blocks=[0, 1, 10, 11]))


@pytest.mark.parametrize(
    "settings,needle",
    [
        ({"r": 0}, "peft.r=0 must be a whole number > 0"),
        ({"r": -2}, "peft.r=-2"),
        ({"r": 2.5}, "peft.r=2.5"),
        ({"lora_alpha": 0}, "peft.lora_alpha=0"),
        ({"lora_dropout": 1.0}, "peft.lora_dropout=1.0"),
        ({"decoder_target_modules": ["qkv"]}, "peft.decoder_target_modules: 'qkv' is not a linear layer there"),
        ({"encoder_target_modules": ["q_proj"]}, "peft.encoder_target_modules: 'q_proj'"),
        ({"checkpointing": True}, "peft.checkpointing=true needs encoder adapters"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(settings, needle):
    with pytest.raises(SamlitError) as caught:
        LoraSpec(**{"decoder_target_modules": ("q_proj",), **settings})
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_bad_settings_from_the_command_line_fail_before_any_model(compose_cfg):
    """Hydra wraps the error; the entry point prints the SamlitError behind it (``find_user_error``)."""
    with pytest.raises(Exception) as caught:
        instantiate(compose_cfg("peft=lora", "peft.r=0").peft)
    assert "peft.r=0" in str(find_user_error(caught.value))


def test_checkpointing_gives_the_same_gradients():
    """Gradient checkpointing of the encoder blocks recomputes activations; the gradients stay the same."""
    pixels = image()
    grads = []
    for checkpointing in (False, True):
        sam = apply_lora(tiny(), LoraSpec(encoder_target_modules=("qkv",), checkpointing=checkpointing))
        perturb_adapters(sam, scale=0.1)
        sam.image_encoder.train()
        encode_features(sam, pixels)["embedding"].square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in sam.image_encoder.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 4
    for name, grad in grads[0].items():
        assert grad.abs().sum() > 0 and torch.allclose(grads[1][name], grad, atol=1e-6), name


def test_parameter_counts_and_adapter_state():
    sam = apply_lora(tiny(), LoraSpec(decoder_target_modules=("q_proj", "v_proj"), r=2, train_decoder=False))
    counts = parameter_counts(sam)
    # 14 adapted 256 -> 256 (self-attention) or 256 -> 128 (cross-attention: downsample 2) layers, A (r, in) + B
    assert counts["mask_decoder"]["trainable"] == counts["mask_decoder"]["adapters"] > 0
    assert counts["image_encoder"]["trainable"] == counts["image_encoder"]["adapters"] == 0
    assert counts["mask_decoder"]["total"] == sum(p.numel() for p in tiny().mask_decoder.parameters())
    state = adapter_state(sam)
    assert len(state) == 28 and all(".lora_A.default." in k or ".lora_B.default." in k for k in state)
    assert sum(v.numel() for v in state.values()) == counts["mask_decoder"]["adapters"]


def test_an_adapters_file_goes_back_onto_its_base_model(tmp_path):
    """``export/adapters.safetensors`` + the base model = the trained model (``load_adapters``); a plain SAM file or
    another model is one line."""
    from samlit.run.export import export_adapters, export_sam

    spec = LoraSpec(encoder_target_modules=("qkv",), decoder_target_modules=("v_proj",), r=2)
    trained = apply_lora(tiny(), spec)
    perturb_adapters(trained)
    path = export_adapters(trained, tmp_path / "adapters.safetensors", spec=spec, model_type="tiny")
    base = tiny()
    assert load_adapters(base, path) == spec
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in base.state_dict().items())
    with pytest.raises(SamlitError, match="is not a readable safetensors file"):
        load_adapters(tiny(), export_sam(tiny(), tmp_path / "plain.pth"))
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(SamlitError, match="is not a samlit adapters file"):
        load_adapters(tiny(), tmp_path / "other.safetensors")
    wrong = {"image_encoder.blocks.0.attn.qkv.lora_A.default.weight": torch.zeros(2, 5)}  # tiny's is (2, 96)
    save_file(wrong, tmp_path / "wrong.safetensors", metadata=adapter_metadata(spec, model_type="tiny"))
    with pytest.raises(SamlitError, match="does not fit this model"):
        load_adapters(tiny(), tmp_path / "wrong.safetensors")


def test_load_trained_takes_a_checkpoint_of_the_same_settings_only():
    spec = LoraSpec(encoder_target_modules=("qkv",))
    trained = apply_lora(tiny(), spec)
    perturb_adapters(trained)
    checkpoint = {f"sam.{k}": v for k, v in trained.state_dict().items() if not k.startswith("image_encoder.blocks")}
    checkpoint |= {f"sam.{k}": v for k, v in trained.state_dict().items() if ".lora_" in k}
    rebuilt = apply_lora(tiny(), spec)
    load_trained(rebuilt, checkpoint, path="run.ckpt")
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in rebuilt.state_dict().items())
    with pytest.raises(SamlitError, match=r"run\.ckpt holds image_encoder\.blocks\.0\.attn\.qkv\.lora_A"):
        load_trained(tiny(), checkpoint, path="run.ckpt")


def test_spec_from_a_runs_config():
    assert not spec_from_config(None).enabled
    node = {"_target_": "samlit.model.lora.LoraSpec", "decoder_target_modules": ["q_proj"], "r": 8}
    spec = spec_from_config(node)
    assert spec.decoder_target_modules == ("q_proj",) and spec.r == 8


def test_hq_mode_keeps_its_fresh_parts_training_under_decoder_adapters():
    """HQ mode (``model.hq_train=hq``) with ``peft=decoder_lora``: the HQ parts train as ``hq_train`` says, SAM's own
    decoder weights only through their adapters; the merged state dict has HQ-SAM's keys."""
    torch.manual_seed(0)
    sam = build_sam(model_type="tiny", hq=True, hq_train="hq")
    keys = sam.state_dict().keys()
    apply_lora(sam, LoraSpec(decoder_target_modules=("q_proj", "v_proj"), train_decoder=False))
    names = trained_names(sam)
    assert "mask_decoder.hf_token.weight" in names and "mask_decoder.iou_token.weight" not in names
    assert any(".lora_A." in n for n in names)
    assert not [n for n in names if n.startswith("mask_decoder.transformer.") and ".lora_" not in n]
    assert stock_state_dict(sam).keys() == keys


@pytest.mark.slow
def test_vit_b_with_adapters_exports_what_stock_segment_anything_loads(tmp_path):
    """vit_b (random weights) with encoder and decoder adapters, trained (a random B): the merged export loads
    strictly into stock ``segment_anything``'s vit_b and holds the adapted model's merged weights
    (``verify_export``): adapted blocks merged, the others as they were."""
    from samlit.run.export import export_sam, verify_export

    torch.manual_seed(0)
    sam = apply_lora(
        build_sam(model_type="vit_b"),
        LoraSpec(encoder_target_modules=("qkv",), decoder_target_modules=("q_proj", "v_proj"), blocks=[0, 1, 10, 11]),
    )
    perturb_adapters(sam, scale=0.05)
    path = export_sam(sam, tmp_path / "sam_vit_b_finetuned.pth")
    verify_export(sam, path, model_type="vit_b")
    saved = torch.load(path, weights_only=True, mmap=True)
    assert not [k for k in saved if ".lora_" in k or ".base_layer." in k]
    adapted = sam.image_encoder.blocks[0].attn.qkv.base_layer.weight
    assert not torch.equal(saved["image_encoder.blocks.0.attn.qkv.weight"], adapted)  # merged, not the base
    plain = sam.image_encoder.blocks[2].attn.qkv.weight  # block 2 has no adapter: as it was
    assert torch.equal(saved["image_encoder.blocks.2.attn.qkv.weight"], plain)

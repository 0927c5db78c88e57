"""SamFineTuner: what trains, what stays frozen, where a group's embedding comes from, how groups of prompts go
through the decoder, which loss terms it logs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from samlit.core.digests import image_digest
from samlit.core.errors import SamlitError
from samlit.data.frame import to_sam_frame
from samlit.data.sample import InstanceSample


def group(key: str, *, size: int = 96, n: int = 2, seed: int = 0, image: bool = False) -> dict:
    """A group as a loader hands it out: with a prepared ``embedding`` (a random one: the decoder does not care, and
    the tiny encoder takes seconds per image on a CPU), or with its frame ``image`` instead (``cache=none``)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size + 16, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size + 16), bool)
    boxes = []
    for i in range(n):
        x0, y0 = 5 + 40 * i, 10
        masks[i, y0 : y0 + 30, x0 : x0 + 30] = True
        boxes.append([x0, y0, x0 + 30, y0 + 30])
    sample = InstanceSample(key=key, image=pixels, masks=masks, boxes=np.array(boxes, np.float32))
    out = {**to_sam_frame(sample, boxes=sample.boxes), "source": (key, None, 0)}
    out["image_digest"] = image_digest(out["image"])
    if not image:
        del out["image"]
        out["embedding"] = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(seed)).half()
    return out


@pytest.fixture
def module(compose_cfg):
    return instantiate(compose_cfg().module)


def test_only_the_decoder_reaches_the_optimizer(module):
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    decoder = {id(p) for p in module.sam.mask_decoder.parameters()}
    assert in_optimizer == decoder
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_freezing_after_a_step(module):
    module.train()
    assert module.sam.mask_decoder.training
    assert not module.sam.image_encoder.training and not module.sam.prompt_encoder.training
    terms, _ = module.model_step([group("a"), group("b", n=1, seed=1)], "train")
    terms["loss"].backward()
    assert all(p.grad is None for p in module.sam.image_encoder.parameters())
    assert all(p.grad is None for p in module.sam.prompt_encoder.parameters())
    grads = [p.grad for p in module.sam.mask_decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_embedding_comes_with_the_group_else_from_the_device_else_from_the_encoder(module):
    """A prepared embedding (float16 from the store) is taken as float32 and never encoded; a resident one is found
    by its image digest; only a group with its image alone (``cache=none``) runs the encoder, at every step."""
    prepared = group("a")
    assert torch.equal(module.image_embedding(prepared), prepared["embedding"].float())
    assert module.image_embedding(prepared).dtype == torch.float32

    raw = group("b", seed=1, image=True)
    fresh = module.image_embedding(raw)
    assert fresh.shape == (1, 256, 64, 64) and not fresh.requires_grad and module.encoder_calls == 1
    module.model_step([raw, prepared], "val")
    assert module.encoder_calls == 2  # the image again, the prepared group not at all

    module.resident = {raw["image_digest"]: {"embedding": fresh.half()}}  # kept on the device: the group names it
    named = {k: v for k, v in raw.items() if k != "image"}
    assert torch.equal(module.image_embedding(named), fresh.half().float())
    assert torch.equal(module.image_embedding(raw), fresh.half().float()) and module.encoder_calls == 2
    with pytest.raises(SamlitError, match=r"^c: the batch carries neither its embedding nor its image$"):
        module.image_embedding({**named, "key": "c", "image_digest": "0" * 64})


def test_predictions_carry_the_source_not_the_image(module):
    module.eval()
    with torch.no_grad():
        _, predictions = module.model_step([group("a"), group("b", n=1, seed=1)], "val")
    assert [p["source"] for p in predictions] == [("a", None, 0), ("b", None, 0)]
    assert all("image" not in p and p["pred"].shape == p["masks"].shape for p in predictions)


def test_images_in_a_batch_are_not_mixed(module):
    """A group's masks depend only on its own image: batching two images == decoding each alone."""
    module.eval()
    a, b = group("a"), group("b", n=3, seed=1)
    with torch.no_grad():
        alone_a, _ = module(a)
        alone_b, _ = module(b)
        module.model_step([a, b], "val")
        again_b, _ = module(b)
    assert alone_a.shape == (2, 256, 256) and alone_b.shape == (3, 256, 256)
    assert torch.allclose(alone_b, again_b)
    assert not torch.allclose(alone_a[0], alone_b[0])


def test_full_frame_loss_runs(compose_cfg):
    module = instantiate(compose_cfg("module.loss_frame=full").module)
    terms, _ = module.model_step([group("a")], "train")
    assert torch.isfinite(terms["loss"])
    with pytest.raises(Exception, match="loss_frame"):
        instantiate(compose_cfg("module.loss_frame=mid").module)


def test_checkpoints_leave_out_frozen_weights(module):
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(k.startswith("sam.mask_decoder.") for k in checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=True)


def test_bf16_mixed_fit_steps_run_on_cpu_and_log_each_loss_term(module):
    """``trainer.precision=bf16-mixed``: two real fit steps under Lightning's bf16 autocast on the CPU.

    The groups carry their prepared embeddings (the bf16 encoder pass is ~25x slower than fp32 on a CPU without
    bf16 units): the fit encodes nothing. The decoder's forward, loss and backward run in bf16 autocast, as in a
    GPU run; ``train/loss`` and each named term of the loss are logged.
    """
    import lightning as L
    from torch.utils.data import DataLoader

    groups = [group("a"), group("b", n=1, seed=1)]
    before = [p.detach().clone() for p in module.sam.mask_decoder.parameters()]
    trainer = L.Trainer(
        precision="bf16-mixed",
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(groups, batch_size=2, collate_fn=list))
    assert module.encoder_calls == 0
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_step"])
    assert {"train/loss_epoch", "train/loss_mask", "train/loss_iou"} <= set(metrics)
    assert metrics["train/loss_epoch"] != metrics["train/loss_mask"]  # the IoU head's term is in the loss
    after = list(module.sam.mask_decoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_each_loss_term_is_the_mean_over_the_batch_masks(module):
    """Every term (``loss``, ``loss_mask``, ``loss_iou``) weighs each group by its number of masks."""
    module.eval()
    a, b = group("a", n=3), group("b", n=1, seed=1)
    with torch.no_grad():
        both, _ = module.model_step([a, b], "train")
        alone = [module.model_step([g], "train")[0] for g in (a, b)]
    assert set(both) == {"loss", "loss_mask", "loss_iou"}
    for name, value in both.items():
        assert torch.allclose(value, (3 * alone[0][name] + alone[1][name]) / 4, atol=1e-6), name
    assert torch.allclose(both["loss"], both["loss_mask"] + module.loss.iou_head_weight * both["loss_iou"])


def with_points(g: dict, count: int = 2) -> dict:
    n = len(g["boxes"])
    coords = g["boxes"][:, None, :2].repeat(1, count, 1) + 5
    return {**g, "point_coords": coords, "point_labels": torch.ones(n, count, dtype=torch.int64)}


def test_one_batched_decoder_call_gives_what_a_call_per_image_gives(compose_cfg):
    """``module.decoder_batching=batched``: the same loss, logits and decoder gradients as per image, also when
    some groups have point prompts (they go in their own call)."""
    batch = [group("a"), with_points(group("b", n=3, seed=1)), group("c", n=1, seed=2), with_points(group("d"))]
    results = {}
    for batching in ("per_image", "batched"):
        torch.manual_seed(0)  # the same random weights both times
        module = instantiate(compose_cfg(f"module.decoder_batching={batching}").module)
        module.train()
        decoded = module.decode_batch(batch)
        terms, _ = module.model_step(batch, "train")
        loss = terms["loss"]
        loss.backward()
        grads = [p.grad.clone() for p in module.sam.mask_decoder.parameters() if p.grad is not None]
        results[batching] = (decoded, loss.detach(), grads)
    (per_image, loss_a, grads_a), (batched, loss_b, grads_b) = results["per_image"], results["batched"]
    assert [logits.shape for logits, _ in batched] == [(2, 256, 256), (3, 256, 256), (1, 256, 256), (2, 256, 256)]
    for (logits_a, iou_a), (logits_b, iou_b) in zip(per_image, batched, strict=True):
        assert torch.allclose(logits_a, logits_b, atol=1e-4) and torch.allclose(iou_a, iou_b, atol=1e-5)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert len(grads_a) == len(grads_b) and all(
        torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads_a, grads_b, strict=True)
    )


def test_decoder_batching_auto_is_per_image_on_cpu_and_a_bad_value_names_the_key(compose_cfg):
    module = instantiate(compose_cfg().module)
    assert module.hparams.decoder_batching == "auto"
    calls = []
    module.forward = lambda g, features=None: calls.append(g["key"]) or (torch.zeros(len(g["boxes"]), 256, 256), None)
    module.decode_batch([group("a"), group("b", seed=1)])
    assert calls == ["a", "b"]  # one call per image on this CPU
    with pytest.raises(Exception, match=re.escape("module.decoder_batching='both' must be one of auto, per_image")):
        instantiate(compose_cfg("module.decoder_batching=both").module)


def recording(module) -> list[dict]:
    """Wrap ``module.forward``: each decoder call's group and logits, in call order."""
    calls, forward = [], module.forward

    def record(g, features=None):
        logits, iou = forward(g, features)
        calls.append({"group": g, "logits": logits})
        return logits, iou

    module.forward = record
    return calls


def test_corrective_clicks_add_k_decoder_passes_whose_losses_are_averaged(compose_cfg):
    """``module.corrective_clicks=2``: 3 decoder calls per image; pass k has k more points, each positive click on a
    false negative and each negative one on a false positive of pass k-1 (in the decoder's frame); with
    ``mask_prompt_probability=1`` the previous logits (detached) are the mask prompt; the loss is the passes' mean."""
    overrides = [
        "module.corrective_clicks=2",
        "module.mask_prompt_probability=1",
        "module.click_from_truth_probability=0",
    ]
    torch.manual_seed(0)
    module = instantiate(compose_cfg(*overrides).module)
    module.train()
    batch = [group("a"), with_points(group("b", n=3, seed=1))]
    calls = recording(module)
    terms, _ = module.model_step(batch, "train")
    assert [c["group"]["key"] for c in calls] == ["a", "b"] * 3
    for k, call in enumerate(calls):
        g, before = call["group"], batch[k % 2]
        own = before["point_coords"].shape[1] if "point_coords" in before else 0
        assert g.get("point_coords", torch.zeros(0, 0, 2)).shape[1] == own + k // 2
        assert ("mask_input" in g) == (k >= 2)
        if k >= 2:
            previous = calls[k - 2]["logits"]
            assert torch.equal(g["mask_input"], previous) and not g["mask_input"].requires_grad
            pred, truth = previous > 0, before["low_res_targets"] > 0.5
            (x, y), label = ((g["point_coords"][:, -1] - 1.5) / 4).T, g["point_labels"][:, -1]
            for i in range(len(label)):
                if label[i] != -1:
                    row, col = int(y[i]), int(x[i])
                    assert bool(truth[i, row, col]) == bool(label[i]) != bool(pred[i, row, col])
    per_pass = [module.loss(c["logits"], c["group"]["low_res_targets"], torch.zeros(len(c["logits"]))) for c in calls]
    n = [len(c["logits"]) for c in calls]
    expected = sum(p["loss_mask"] * m for p, m in zip(per_pass, n, strict=True)) / sum(n)
    assert torch.allclose(terms["loss_mask"], expected, atol=1e-6)


def test_training_clicks_are_a_function_of_seed_epoch_key_and_pass(compose_cfg):
    torch.manual_seed(0)
    module = instantiate(compose_cfg("module.corrective_clicks=1").module)
    logits = torch.randn(2, 256, 256)
    g = group("a")
    first, again = module.click_pass(g, logits, 1), module.click_pass(g, logits, 1)
    assert torch.equal(first["point_coords"], again["point_coords"]) and ("mask_input" in first) == (
        "mask_input" in again
    )
    others = [module.click_pass(group("b"), logits, 1), module.click_pass(g, logits, 2)]
    module.hparams.seed = 1
    others.append(module.click_pass(g, logits, 1))
    assert all(not torch.equal(o["point_coords"], first["point_coords"]) for o in others)


def test_batched_decoder_calls_take_mask_prompts_and_clicks_as_calls_per_image_do(compose_cfg):
    with_mask = lambda g, seed: {**g, "mask_input": torch.randn(len(g["boxes"]), 256, 256, generator=seed)}  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    batch = [
        with_mask(with_points(group("a")), generator),
        with_points(group("b", n=3, seed=1)),
        with_mask(group("c", seed=2), generator),
    ]
    results = []
    for batching in ("per_image", "batched"):
        torch.manual_seed(0)
        module = instantiate(compose_cfg(f"module.decoder_batching={batching}").module)
        results.append(module.decode_batch(batch))
    for (logits_a, iou_a), (logits_b, iou_b) in zip(*results, strict=True):
        assert torch.allclose(logits_a, logits_b, atol=1e-4) and torch.allclose(iou_a, iou_b, atol=1e-5)
    plain = results[0][2][0]
    torch.manual_seed(0)
    module = instantiate(compose_cfg().module)
    assert not torch.allclose(module.decode_batch([group("c", seed=2)])[0][0], plain, atol=1e-3)  # the mask counts


def test_the_test_pass_scores_every_mask_after_each_click(compose_cfg):
    torch.manual_seed(0)
    module = instantiate(compose_cfg("clicks=3").module)
    module.eval()
    batch = [group("a"), group("b", n=3, seed=1)]
    calls = recording(module)
    with torch.no_grad():
        module.model_step(batch, "test")
    assert len(calls) == 2 * (1 + 3)  # per image: the box pass, then 3 click passes on the same features
    computed = module.test_clicks.compute()
    assert int(computed["n_masks"]) == 5 and {f"miou_{k}" for k in range(4)} <= set(computed)
    first = calls[0]["logits"]
    box_iou = module.test_metrics["iou"].compute()  # the box pass's mean IoU is the curve's first point
    assert computed["miou_0"].item() == pytest.approx(box_iou.item(), abs=1e-5), first.shape


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("module.corrective_clicks=-1", "module.corrective_clicks=-1 must be a whole number of clicks >= 0"),
        ("clicks=1.5", "clicks=1.5 must be a whole number of clicks >= 0"),
        ("module.mask_prompt_probability=1.5", "module.mask_prompt_probability=1.5 must be a probability in [0, 1]"),
    ],
)
def test_bad_click_settings_name_the_key(compose_cfg, override, line):
    with pytest.raises(Exception, match=re.escape(line)):
        instantiate(compose_cfg(override).module)


@pytest.mark.parametrize("batching", ["per_image", "batched"])
def test_prompts_decoded_in_parts_give_one_calls_loss_and_gradients(compose_cfg, batching):
    """``module.max_prompts_per_call=2``: an image with 7 instances goes through the decoder in 4 checkpointed parts
    (memory of one part); the loss, logits and gradients are those of one call (``max_prompts_per_call=null``),
    with corrective clicks and mask prompts too."""
    batch = [group("a", n=7, size=320), with_points(group("b", n=3, seed=1))]
    results = {}
    for limit in ("null", "2"):
        torch.manual_seed(0)
        overrides = [f"module.max_prompts_per_call={limit}", f"module.decoder_batching={batching}"]
        module = instantiate(compose_cfg(*overrides, "module.corrective_clicks=1").module)
        module.train()
        calls: list[int] = []  # prompts per transformer call
        module.sam.mask_decoder.transformer.register_forward_hook(lambda m, i, out, seen=calls: seen.append(len(i[0])))
        terms, _ = module.model_step(batch, "train")
        terms["loss"].backward()
        grads = [p.grad.clone() for p in module.sam.mask_decoder.parameters() if p.grad is not None]
        results[limit] = (terms["loss"].detach(), grads, calls)
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results["null"], results["2"]
    assert max(calls_b) <= 2 < max(calls_a)  # a transformer call never saw more than 2 prompts
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert len(grads_a) == len(grads_b) and all(
        torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads_a, grads_b, strict=True)
    )


@pytest.mark.parametrize("value", ["0", "-3", "2.5"])
def test_a_bad_prompts_per_call_names_the_key(compose_cfg, value):
    with pytest.raises(Exception) as caught:
        instantiate(compose_cfg(f"module.max_prompts_per_call={value}").module)
    assert f"module.max_prompts_per_call={value}" in str(caught.value)

"""``train.py peft=...`` end to end: encoder adapters turn the embedding cache off, decoder adapters keep it; the
exports hold the adapters merged (stock keys: eval.py with them gives the run's numbers), ``adapters.safetensors``
holds them unmerged, checkpoints hold what trains, and a resume is exact or, with other settings, one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from samlit.model.sam import build_sam
from tests.conftest import FAST, REPO
from tests.run.test_resume import SIGNAL_AT
from tests.run.test_train import check_export_cli, only_run_dir, run_train

BOTH = [*FAST, "peft=lora"]


@pytest.fixture(scope="module")
def both_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``debug=fast peft=lora``: adapters on the encoder's qkv and the decoder's q / v, the decoder's own weights
    frozen."""
    root = tmp_path_factory.mktemp("lora")
    result = run_train(root, *BOTH)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, only_run_dir(root), result


def eval_metrics(root: Path, *overrides: str) -> dict:
    command = [sys.executable, str(REPO / "eval.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    result = subprocess.run([*command, *FAST, *overrides], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = sorted((root / "outputs" / "eval" / "runs").iterdir())[-1]
    return json.loads((eval_dir / "metrics.json").read_text())


def test_encoder_adapters_train_without_the_cache_and_export_merged(both_run):
    root, run_dir, result = both_run
    assert "embedding cache off: peft adapts the image encoder" in result.stdout + result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # no store: every step encoded its items (with gradients into the encoder's adapters)
    assert metrics["store"]["mode"] == "none" and metrics["store"]["encoded_in_steps"] > 0
    trained = metrics["trained"]
    assert trained["peft"] == "lora" and trained["settings"]["encoder_target_modules"] == ["qkv"]
    parts = trained["parameters"]
    assert parts["image_encoder"]["trainable"] == parts["image_encoder"]["adapters"] > 0
    assert parts["mask_decoder"]["trainable"] == parts["mask_decoder"]["adapters"] > 0  # train_decoder=false
    assert parts["prompt_encoder"]["trainable"] == 0
    report = (run_dir / "report.md").read_text()
    assert "## What trained" in report and "LoRA (peft=lora): rank 4" in report and "adapters.safetensors" in report

    # the full export: stock keys (no lora_, no base_layer), loading strictly into a plain model
    export = torch.load(run_dir / "export" / "sam_tiny_finetuned.pth", weights_only=True)
    assert export.keys() == build_sam(model_type="tiny").state_dict().keys()
    decoder = torch.load(run_dir / metrics["export_decoder"], weights_only=True)
    assert all(torch.equal(v, export[k]) for k, v in decoder.items())

    # the unmerged adapters, with the settings that made them
    with safe_open(run_dir / metrics["export_adapters"], framework="pt") as adapters:
        keys = list(adapters.keys())
        settings = json.loads(adapters.metadata()["peft"])
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert any(k.startswith("image_encoder.") for k in keys) and any(k.startswith("mask_decoder.") for k in keys)
    assert settings == trained["settings"]

    # checkpoints hold what trains: adapters and the decoder, not the frozen encoder's weights
    checkpoint = torch.load(metrics["best_checkpoint"], weights_only=True)
    state = checkpoint["state_dict"]
    assert any(".lora_A." in k for k in state if k.startswith("sam.image_encoder."))
    assert not [k for k in state if k.startswith("sam.image_encoder.") and ".lora_" not in k]
    assert checkpoint["samlit_peft"] == trained["settings"]

    # the merged export is the trained model: eval.py with it gives the run's fine-tuned numbers
    evaluated = eval_metrics(root, f"model.weights={run_dir / 'export' / 'sam_tiny_finetuned.pth'}")
    for key in ("iou", "dice", "n_masks"):
        assert evaluated[key] == pytest.approx(metrics["fine_tuned"][key], abs=1e-4), key


def test_a_lora_checkpoint_as_decoder_weights_is_one_line(both_run):
    root, run_dir, _ = both_run
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    command = [sys.executable, str(REPO / "eval.py"), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    result = subprocess.run([*command, *FAST, f"model.decoder_weights={best}"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "holds LoRA adapters" in line and "merged export" in line


@pytest.mark.slow
def test_resume_with_adapters_is_exact_and_other_settings_are_one_line(tmp_path, both_run):
    """SIGTERM mid-epoch 0 of a ``peft=lora`` run; resuming with ``peft=decoder_lora`` is refused in one line naming
    the key; resuming with the run's own settings ends where the unbroken run (``both_run``) ended."""
    _, straight, _ = both_run
    stopped = run_train(tmp_path, *BOTH, SIGNAL_AT, "+callbacks.signal.step=3", "+callbacks.signal.signal=SIGTERM")
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    resume = [f"ckpt_path={interrupted}", f"hydra.run.dir={run_dir}"]

    other = run_train(tmp_path, *FAST, "peft=decoder_lora", *resume)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    (line,) = other.stderr.strip().splitlines()[-1:]
    assert "peft.encoder_target_modules=['qkv']" in line and "start a new run" in line
    # the refused resume left the checkpoint it was given as it was (it used to overwrite it with its own model)
    assert torch.load(interrupted, weights_only=True)["samlit_peft"]["encoder_target_modules"] == ["qkv"]

    resumed = run_train(tmp_path, *BOTH, *resume)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((straight / "metrics.json").read_text())
    finished = json.loads((run_dir / "metrics.json").read_text())
    for key in ("iou", "dice"):
        assert finished["fine_tuned"][key] == pytest.approx(expected["fine_tuned"][key], abs=1e-5), key
    ends = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (straight, run_dir)]
    assert ends[0].keys() == ends[1].keys()
    for key, value in ends[0].items():
        assert torch.allclose(ends[1][key], value, atol=1e-5), key


def test_decoder_adapters_keep_the_cache_and_the_export_cli_rebuilds_them(tmp_path):
    """``peft=decoder_lora``: the encoder is frozen, so the prepare stage encodes each item once and no step
    encodes; ``python -m samlit.export`` rebuilds the same merged files (and the adapters) from the checkpoint; the
    decoder export works as ``model.decoder_weights=`` over the base weights."""
    result = run_train(tmp_path, *FAST, "peft=decoder_lora")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    store = metrics["store"]
    assert store["mode"] == "disk" and store["encoded"] > 0 and store["encoded_in_steps"] == 0
    parts = metrics["trained"]["parameters"]
    assert parts["image_encoder"]["trainable"] == 0 and parts["mask_decoder"]["adapters"] > 0
    check_export_cli(run_dir, tmp_path / "re-export")
    assert (tmp_path / "re-export" / "adapters.safetensors").is_file()
    # the ONNX decoder of the merged model, checked against stock SamPredictor before it is written
    export = run_dir / "export" / "sam_tiny_finetuned.pth"
    command = [sys.executable, "-m", "samlit.export", str(run_dir), "--weights", str(export), "--onnx"]
    onnx = subprocess.run([*command, "--out", str(tmp_path / "onnx")], capture_output=True, text=True)
    assert onnx.returncode == 0, onnx.stderr[-3000:]
    assert (tmp_path / "onnx" / "sam_tiny_decoder.onnx").is_file()
    # the decoder export over the base encoder (the run's random one, kept in the full export: its encoder is
    # untouched by decoder adapters) gives the run's numbers
    evaluated = eval_metrics(
        tmp_path, f"model.weights={export}", f"model.decoder_weights={run_dir / metrics['export_decoder']}"
    )
    assert evaluated["iou"] == pytest.approx(metrics["fine_tuned"]["iou"], abs=1e-4)

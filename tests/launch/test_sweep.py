"""Sweeps: the summary (a Hydra callback), Optuna, and DDP inside a multirun (one dir per job, never more)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samlit.launch.sweep import summarize, write_summary
from tests.conftest import REPO


def fake_job(
    sweep_dir: Path, num: int, overrides: list[str], iou: float | None, *, strokes: bool = True, clicks: int = 0
) -> None:
    """A job dir; ``strokes=False``: a metrics.json from before the stroke scores (IoU / Dice only); ``clicks=N``:
    both stages scored after 0..N corrective clicks (mean IoU ``iou + k / 100`` after k clicks, NoC@85 ``N / 2``,
    NoC@90 ``N``; zero-shot: ``0.01 + k / 100``, NoC ``N``)."""
    job = sweep_dir / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if iou is not None:
        stage = {"iou": iou, "dice": 2 * iou / (1 + iou), "n_masks": 3}
        zero_shot = {"iou": 0.01, "dice": 0.02, "n_masks": 3}
        if strokes:
            boundary = {"1px": iou / 2, "2px": iou / 1.5, "3px": iou / 1.2, "2%": iou, "2%_band_covers_mask": 1.0}
            stage.update(boundary_iou=boundary, cldice=iou + 0.1)
            zero_shot.update(boundary_iou={**boundary, "1px": 0.005}, cldice=0.03)
        if clicks:
            block = {"not_reached_85": 1, "not_reached_90": 2, "max_clicks": clicks, "n_masks": 3}
            stage["clicks"] = {**block, "miou": [iou + k / 100 for k in range(clicks + 1)], "noc85": clicks / 2}
            stage["clicks"]["noc90"] = float(clicks)
            miou = [0.01 + k / 100 for k in range(clicks + 1)]
            zero_shot["clicks"] = {**block, "miou": miou, "noc85": float(clicks), "noc90": float(clicks)}
        metrics = {"zero_shot": zero_shot, "fine_tuned": stage, "best_val_iou": iou, "wall_time_s": 12.5}
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_ranks_jobs_marks_the_best_and_keeps_failed_ones(tmp_path):
    fake_job(tmp_path, 0, ["loss=dice", "optimizer.lr=1e-4", "data.root=/d"], 0.30)
    fake_job(tmp_path, 1, ["loss=focal", "optimizer.lr=1e-4", "data.root=/d"], None)  # failed: no metrics
    fake_job(tmp_path, 2, ["loss=dice", "optimizer.lr=1e-3", "data.root=/d"], 0.45)
    fake_job(tmp_path, 10, ["loss=focal", "optimizer.lr=1e-3", "data.root=/d"], 0.10, strokes=False)  # an old run
    csv_path, md_path = write_summary(tmp_path)

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["job"] for r in rows] == ["2", "0", "10", "1"]
    assert [r["best"] for r in rows] == ["True", "False", "False", "False"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "no metrics"]
    assert rows[0]["overrides"] == "loss=dice optimizer.lr=1e-3"  # what varies; data.root is common
    assert float(rows[0]["fine_tuned_iou"]) == pytest.approx(0.45) and rows[0]["run_dir"] == str(tmp_path / "2")
    assert float(rows[0]["fine_tuned_boundary_iou_1px"]) == pytest.approx(0.225)
    assert float(rows[0]["fine_tuned_cldice"]) == pytest.approx(0.55)
    assert float(rows[0]["zero_shot_boundary_iou_1px"]) == pytest.approx(0.005)
    assert float(rows[0]["zero_shot_cldice"]) == pytest.approx(0.03)
    old = rows[2]  # job 10: a metrics.json without stroke scores still summarises, those cells empty
    assert old["status"] == "ok" and float(old["fine_tuned_iou"]) == pytest.approx(0.10)
    assert old["fine_tuned_boundary_iou_1px"] == old["fine_tuned_cldice"] == old["zero_shot_cldice"] == ""

    md = md_path.read_text()
    assert "3 of 4 jobs have metrics" in md and "`data.root=/d`" in md
    best_line = next(line for line in md.splitlines() if "**best**" in line)
    assert "[2](2)" in best_line and "0.4500" in best_line and "0.2250" in best_line and "0.5500" in best_line
    assert "fine-tuned boundary IoU 1px | fine-tuned clDice" in md
    header, rule = (line for line in md.splitlines() if line.startswith("| |") or line.startswith("|---"))
    assert header.count("|") == rule.count("|") == best_line.count("|")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp file
    assert "mIoU@" not in md and "NoC" not in md and "Corrective clicks" not in md  # no job ran with clicks
    assert all(r["fine_tuned_miou_at_1"] == r["fine_tuned_noc90"] == r["max_clicks"] == "" for r in rows)


def test_summary_has_the_corrective_clicks_of_jobs_that_ran_them(tmp_path):
    """``clicks=N`` jobs: mean IoU after 1, 3, 5 clicks (empty past N) and NoC of both stages in the CSV, the
    fine-tuned ones in the markdown; a ``clicks=0`` job's cells stay empty; the order is still by fine-tuned IoU."""
    fake_job(tmp_path, 0, ["clicks=3", "loss=dice"], 0.30, clicks=3)
    fake_job(tmp_path, 1, ["clicks=0", "loss=dice"], 0.50)
    fake_job(tmp_path, 2, ["clicks=6", "loss=focal"], 0.40, clicks=6)
    csv_path, md_path = write_summary(tmp_path)

    rows = {r["job"]: r for r in csv.DictReader(csv_path.open())}
    assert list(rows) == ["1", "2", "0"]  # by fine-tuned IoU, as without clicks
    six, three, none = rows["2"], rows["0"], rows["1"]
    assert [float(six[f"fine_tuned_miou_at_{k}"]) for k in (1, 3, 5)] == pytest.approx([0.41, 0.43, 0.45])
    assert (float(six["fine_tuned_noc85"]), float(six["fine_tuned_noc90"]), six["max_clicks"]) == (3.0, 6.0, "6")
    assert [float(six[f"zero_shot_miou_at_{k}"]) for k in (1, 3, 5)] == pytest.approx([0.02, 0.04, 0.06])
    assert float(six["zero_shot_noc85"]) == float(six["zero_shot_noc90"]) == 6.0
    assert float(three["fine_tuned_miou_at_3"]) == pytest.approx(0.33) and three["max_clicks"] == "3"
    assert three["fine_tuned_miou_at_5"] == three["zero_shot_miou_at_5"] == ""  # 5 > N = 3
    click_columns = [c for c in none if "miou_at" in c or "noc" in c] + ["max_clicks"]
    assert len(click_columns) == 11 and all(none[c] == "" for c in click_columns)  # 2 stages x (3 + 2), N

    md = md_path.read_text()
    titles = "fine-tuned clDice | fine-tuned mIoU@1 | fine-tuned mIoU@3 | fine-tuned mIoU@5 | fine-tuned NoC@85 | "
    assert titles + "fine-tuned NoC@90 | best val IoU |" in md
    assert "Corrective clicks (`clicks=N`)" in md and "zero-shot mIoU" not in md
    lines = md.splitlines()
    header, rule = (line for line in lines if line.startswith("| |") or line.startswith("|---"))
    job = {n: next(line for line in lines if f"[{n}]({n})" in line) for n in ("0", "1", "2")}
    assert header.count("|") == rule.count("|") == job["0"].count("|") == job["1"].count("|")
    assert "| 0.4100 | 0.4300 | 0.4500 | 3.00 | 6.00 | 0.4000 |" in job["2"]
    assert "| 0.3100 | 0.3300 |  | 1.50 | 3.00 | 0.3000 |" in job["0"]
    assert "| 0.6000 |  |  |  |  |  | 0.5000 |" in job["1"]  # clDice, no clicks, best val IoU


def test_summary_shows_only_the_click_columns_some_job_has(tmp_path):
    """Every job ran ``clicks=2``: mIoU@1 and the NoC columns, no @3 or @5."""
    fake_job(tmp_path, 0, ["loss=dice"], 0.30, clicks=2)
    fake_job(tmp_path, 1, ["loss=focal"], 0.20, clicks=2)
    md = write_summary(tmp_path)[1].read_text()
    assert "| fine-tuned mIoU@1 | fine-tuned NoC@85 | fine-tuned NoC@90 | best val IoU |" in md and "mIoU@3" not in md


def test_summary_has_the_adapter_columns_of_jobs_that_trained_adapters(tmp_path):
    """``peft=...`` jobs: the option, trainable parameters and, of them, LoRA's, in the CSV and the markdown; a job
    from before adapters (no ``trained``) leaves them empty."""
    counts = {"image_encoder": (0, 0), "prompt_encoder": (0, 0), "mask_decoder": (4_058_340, 0)}
    for num, (peft, parts) in enumerate(
        [
            ("none", counts),
            ("decoder_lora", {**counts, "mask_decoder": (23_552, 23_552)}),
            ("lora", {**counts, "image_encoder": (3_072, 3_072), "mask_decoder": (23_552, 23_552)}),
        ]
    ):
        fake_job(tmp_path, num, [f"peft={peft}"], 0.3 + num / 10)
        metrics_path = tmp_path / str(num) / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        metrics["trained"] = {
            "peft": peft,
            "settings": None,
            "parameters": {k: {"total": 10**6, "trainable": t, "adapters": a} for k, (t, a) in parts.items()},
        }
        metrics_path.write_text(json.dumps(metrics))
    fake_job(tmp_path, 3, ["loss=focal"], 0.1)
    csv_path, md_path = write_summary(tmp_path)
    rows = {r["job"]: r for r in csv.DictReader(csv_path.open())}
    assert (rows["2"]["peft"], rows["2"]["trainable_params"], rows["2"]["adapter_params"]) == ("lora", "26624", "26624")
    assert (rows["0"]["peft"], rows["0"]["trainable_params"], rows["0"]["adapter_params"]) == ("none", "4058340", "0")
    assert rows["3"]["peft"] == rows["3"]["trainable_params"] == ""
    md = md_path.read_text()
    assert "| peft | trainable params | of them LoRA | best val IoU |" in md
    assert "| decoder_lora | 23,552 | 23,552 |" in md and "| none | 4,058,340 | 0 |" in md
    only_none = tmp_path / "only_none"
    fake_job(only_none, 0, ["loss=dice"], 0.3)
    assert "peft" not in write_summary(only_none)[1].read_text()


def test_a_summary_that_fails_leaves_the_old_one_whole(tmp_path, monkeypatch):
    """Issue 26 (a command that fails leaves nothing half-written): a summary that cannot be made, or a write that
    fails (here: the disk fills on the markdown), leaves the old pair as it was and no temp file."""
    from samlit.core import atomic
    from samlit.launch import sweep

    fake_job(tmp_path, 0, ["loss=dice"], 0.30)
    old = [path.read_bytes() for path in write_summary(tmp_path)]
    fake_job(tmp_path, 1, ["loss=focal"], 0.40)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the table")

    monkeypatch.setattr(sweep, "markdown", broken)
    with pytest.raises(RuntimeError):
        write_summary(tmp_path)
    files = [tmp_path / "sweep_summary.csv", tmp_path / "sweep_summary.md"]
    assert [path.read_bytes() for path in files] == old and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()

    real_replace = atomic.os.replace

    def full_disk(source, target):
        if str(target).endswith(".md"):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError, match=r"cannot write .*sweep_summary\.md: No space left on device"):
        write_summary(tmp_path)
    assert [path.read_bytes() for path in files] == old and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert len(list(csv.DictReader(write_summary(tmp_path)[0].open()))) == 2


def test_summary_of_no_jobs_writes_nothing(tmp_path):
    assert write_summary(tmp_path) is None and summarize(tmp_path) == []
    assert not (tmp_path / "sweep_summary.csv").exists()


@pytest.mark.slow
def test_summary_cli(tmp_path):
    fake_job(tmp_path, 0, ["loss=dice"], 0.2)
    result = subprocess.run([sys.executable, "-m", "samlit.sweep", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0 and "**best**" in result.stdout
    empty = subprocess.run([sys.executable, "-m", "samlit.sweep", str(tmp_path / "none")], capture_output=True)
    assert empty.returncode != 0


def multirun(root: Path, *overrides: str, ok: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    command = [sys.executable, str(REPO / "train.py"), "-m", f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    result = subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=900, cwd=root)
    assert (result.returncode == 0) == ok, result.stderr[-4000:]
    train = root / "outputs" / "train"
    assert not (train / "runs").exists()  # no job, no DDP worker, made a single-run dir
    (sweep_dir,) = (train / "multiruns").iterdir()
    return result, sweep_dir


SMALL = ["data.num_scans=16", "data.image_size=128", "trainer.max_epochs=1", "trainer.log_every_n_steps=1"]


@pytest.mark.slow
def test_ddp_sweep_one_dir_per_job_and_a_summary(tmp_path):
    """``-m trainer=ddp_cpu model.decoder_weights=null,<missing> model.hq=true,false``: 2 jobs x 2 gloo processes
    (HQ mode, then the plain decoder; corrective clicks and decoder adapters on), then 2 jobs that fail on the
    missing file. Lightning's
    own launcher would start each worker as a new sweep in new dirs; samlit's keeps every worker in its job's dir,
    and job 1 starts workers of its own after job 0's.
    A failed job does not end the sweep: Hydra reports it at the end, the summary keeps its row. Page frame
    (``data.crop=none``): the other tests run the default box crops."""
    missing = tmp_path / "no-such-decoder.pth"
    weights = f"model.decoder_weights=null,{missing}"
    page = "data.crop=none"
    clicks = ["module.corrective_clicks=1", "clicks=2"]  # click training and the N-click curve under DDP
    adapters = "peft=decoder_lora"  # LoRA on the decoder (HQ mode's too), gradients all-reduced across the ranks
    result, sweep_dir = multirun(
        tmp_path, *SMALL, page, *clicks, adapters, "trainer=ddp_cpu", weights, "model.hq=true,false", ok=False
    )
    assert f"error: {missing}" in result.stderr or str(missing) in result.stderr
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    for job in ("0", "1"):
        job_dir = sweep_dir / job
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["world_size"] == 2
        assert (metrics["hq"] is not None) == (job == "0")
        # every test stamp counted exactly once across the 2 ranks (no padding repeats)
        assert metrics["fine_tuned"]["n_masks"] == metrics["zero_shot"]["n_masks"] == metrics["data"]["test_instances"]
        for stage in ("zero_shot", "fine_tuned"):  # the click curve's sums gathered from both ranks
            assert metrics[stage]["clicks"]["n_masks"] == metrics[stage]["n_masks"]
            assert metrics[stage]["clicks"]["miou"][0] == pytest.approx(metrics[stage]["iou"], abs=1e-5)
        unit = "instances" if metrics["frame"]["crop"] == "box" else "images"
        assert len(metrics["per_image"]) == metrics["data"][f"test_{unit}"]
        assert (job_dir / "train_rank1.log").is_file()  # rank 1 ran inside this job's dir
        exports = sorted(p.name for p in (job_dir / "export").iterdir())
        stem = "sam_hq_tiny" if job == "0" else "sam_tiny"
        assert exports == ["adapters.safetensors", f"{stem}_decoder.pth", f"{stem}_finetuned.pth"]
        assert metrics["trained"]["parameters"]["mask_decoder"]["adapters"] > 0
        assert len(list((job_dir / "checkpoints").glob("*.ckpt"))) == 2  # best + last, written once (rank 0)
    # one prepare stage for the sweep: job 0's ranks made the store between them (HQ: both features), job 1 (plain)
    # found every entry
    stores = [json.loads((sweep_dir / j / "metrics.json").read_text())["store"] for j in ("0", "1")]
    assert stores[0]["mode"] == "disk" and 0 < stores[0]["made"] < stores[0]["entries"]  # rank 0's share
    assert (stores[1]["found"], stores[1]["made"], stores[1]["encoded"]) == (stores[1]["entries"], 0, 0)
    assert stores[0]["encoded_in_steps"] == stores[1]["encoded_in_steps"] == 0
    rows = list(csv.DictReader((sweep_dir / "sweep_summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "no metrics", "no metrics"] and rows[0]["best"] == "True"
    assert {r["overrides"] for r in rows[:2]} == {
        "model.decoder_weights=null model.hq=True",  # as Hydra's sweeper writes a swept bool to overrides.yaml
        "model.decoder_weights=null model.hq=False",
    }
    assert all(str(missing) in r["overrides"] for r in rows[2:])
    assert all(0 <= float(r[k]) <= 1 for r in rows[:2] for k in ("fine_tuned_boundary_iou_1px", "fine_tuned_cldice"))
    assert all(0 <= float(r["fine_tuned_miou_at_1"]) <= 1 and r["max_clicks"] == "2" for r in rows[:2])
    assert all(r["peft"] == "decoder_lora" and int(r["adapter_params"]) > 0 for r in rows[:2])


@pytest.mark.slow
def test_optuna_sweep_runs_two_trials(tmp_path):
    """``hparams_search=optuna`` with 2 trials: Optuna picks the values, train.py returns the objective."""
    _, sweep_dir = multirun(tmp_path, *SMALL, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "loss", "data.prompts.box_jitter"}
    rows = list(csv.DictReader((sweep_dir / "sweep_summary.csv").open()))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    # Optuna maximised what train.py returned: the best val IoU of a trial
    assert results["best_value"] == pytest.approx(max(float(r["best_val_iou"]) for r in rows), abs=1e-6)
    config = yaml.safe_load((sweep_dir / "0" / "config_resolved.yaml").read_text())
    assert config["optimizer"]["lr"] == pytest.approx(results_of_trial(sweep_dir / "0")["optimizer.lr"])


def results_of_trial(job_dir: Path) -> dict:
    """The values Optuna gave a trial, as its job's overrides."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}

"""``train.py`` / ``eval.py`` on your own data (issue 14): the same instance masks written as COCO RLE and as a
label folder give the same split, test masks and metrics (CPU, to 1e-6)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from samlit.data.convert import export_instances
from samlit.data.staver import StaverSource
from samlit.data.synthetic import generate_synthetic_staver
from tests.conftest import REPO
from tests.run.test_train import only_run_dir, run_train

SMALL = ["trainer.max_epochs=2", "trainer.accelerator=cpu", "data.num_workers=0"]


@pytest.mark.slow
def test_coco_and_folder_give_the_same_run(tmp_path):
    staver = generate_synthetic_staver(root=tmp_path / "staver", num_scans=12, image_size=192, seed=7)
    out = tmp_path / "own"
    export_instances(StaverSource(root=staver), out=out)
    sources = {
        "coco": ["data=coco", f"data.images={out}/images", f"data.annotations={out}/instances.json"],
        "folder": ["data=folder", f"data.root={out}"],
    }
    metrics = {}
    for name, overrides in sources.items():
        (tmp_path / name).mkdir()
        result = run_train(tmp_path / name, *SMALL, *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[name] = json.loads((only_run_dir(tmp_path / name) / "metrics.json").read_text())
    coco, folder = metrics["coco"], metrics["folder"]
    assert coco["data"]["source"] == "coco" and folder["data"]["source"] == "folder"
    for split in ("train", "val", "test"):
        assert coco["data"][f"{split}_images"] == folder["data"][f"{split}_images"] > 0
        assert coco["data"][f"{split}_instances"] == folder["data"][f"{split}_instances"]
    assert coco["fine_tuned"]["n_masks"] == folder["fine_tuned"]["n_masks"] > 0
    for stage in ("zero_shot", "fine_tuned"):
        for key in ("iou", "dice"):
            assert coco[stage][key] == pytest.approx(folder[stage][key], abs=1e-6), (stage, key)

    # eval.py: the COCO run's export on the folder layout gives the COCO run's fine-tuned numbers
    export = only_run_dir(tmp_path / "coco") / "export" / "sam_tiny_finetuned.pth"
    command = [sys.executable, str(REPO / "eval.py"), f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    result = subprocess.run(
        [*command, "trainer.accelerator=cpu", *sources["folder"], f"model.weights={export}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (eval_dir,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["iou"] == pytest.approx(coco["fine_tuned"]["iou"], abs=1e-6)

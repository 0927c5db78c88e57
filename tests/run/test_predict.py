"""samlit's predict path gives what stock ``SamPredictor`` gives; ``python predict.py`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samlit.core.errors import SamlitError
from samlit.data.frame import crop_box
from samlit.model.sam import build_sam
from samlit.run.export import export_sam, load_exported
from samlit.run.predict import predict_masks
from tests.conftest import REPO

BOXES = np.array([[20, 30, 120, 110], [150, 60, 260, 170]], dtype=np.float32)


def scan(seed: int = 0) -> np.ndarray:
    """A smooth (H, W, 3) uint8 image with two dark blobs, so masks are not noise."""
    ys, xs = np.mgrid[:200, :300]
    image = np.full((200, 300, 3), 235, np.uint8)
    for cx, cy in ((70, 70), (205, 115)):
        image[np.hypot(xs - cx, ys - cy) < 35 + seed] = (180, 40, 60)
    return image


def stock_masks(sam, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    transformed = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), image.shape[:2])
    masks, _, _ = predictor.predict_torch(None, None, boxes=transformed, multimask_output=False)
    single, _, _ = predictor.predict(box=boxes[0], multimask_output=False)
    assert np.array_equal(single[0], masks[0, 0].numpy())  # one box alone gives the same mask
    return masks[:, 0].numpy()


def tuned(model_type: str):
    torch.manual_seed(0)
    sam = build_sam(model_type=model_type)
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return sam


def test_predict_matches_sam_predictor_tiny():
    sam, image = tuned("tiny"), scan()
    ours, scores = predict_masks(sam, image, BOXES)
    assert ours.shape == (2, 200, 300) and scores.shape == (2,) and ours.any()
    assert np.array_equal(ours, stock_masks(sam, image, BOXES))


def test_crop_mode_is_stock_sam_predictor_on_each_crop_pasted_back():
    """``crop=box``: each box through its own crop (README's ten lines), the mask pasted back at the image size."""
    sam, image = tuned("tiny"), scan()
    ours, scores = predict_masks(sam, image, BOXES, crop="box", crop_margin=0.15)
    assert ours.shape == (2, 200, 300) and scores.shape == (2,)
    for box, mask in zip(BOXES, ours, strict=True):
        x0, y0, x1, y1 = crop_box(box, margin=0.15, image_size=image.shape[:2])
        crop = image[y0:y1, x0:x1]
        stock = stock_masks(sam, crop, (box - np.array([x0, y0, x0, y0], np.float32))[None])[0]
        assert np.array_equal(mask[y0:y1, x0:x1], stock) and not mask[: max(y0, 1) - 1].any()
        outside = mask.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()
    assert not np.array_equal(ours, predict_masks(sam, image, BOXES)[0])  # another frame, other masks


@pytest.mark.slow
def test_exported_vit_b_in_stock_sam_predictor_matches_samlit(tmp_path):
    """The check users do first: the exported file in stock segment-anything gives samlit's masks."""
    sam = tuned("vit_b")
    path = export_sam(sam, tmp_path / "sam_vit_b_finetuned.pth")
    image = scan(1)
    ours, _ = predict_masks(build_sam(model_type="vit_b", weights=str(path)), image, BOXES)
    stock = stock_masks(load_exported(path, model_type="vit_b"), image, BOXES)  # sam_model_registry["vit_b"]
    assert np.array_equal(ours, stock)


def run_predict(tmp_path, *overrides: str, out: str = "out") -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "predict.py"), f"paths.root_dir={tmp_path}", f"output={tmp_path}/{out}"]
    return subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.slow
def test_predict_cli_writes_masks_overlays_and_json(tmp_path):
    image_dir = tmp_path / "scans"
    image_dir.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(image_dir / name), scan())
    result = run_predict(tmp_path, f"image={image_dir}/a.png", "box=[20,30,120,110]")
    assert result.returncode == 0, result.stderr[-2000:]
    mask = cv2.imread(str(tmp_path / "out" / "a_mask_0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (200, 300) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "out" / "a_overlay.png").is_file()
    again = run_predict(tmp_path, f"image={image_dir}/a.png", "box=[0,0,50,50]")  # same output folder
    (line,) = again.stderr.strip().splitlines()
    assert again.returncode == 2 and line.startswith(f"error: output={tmp_path}/out already holds "), again.stderr
    assert (cv2.imread(str(tmp_path / "out" / "a_mask_0.png"), cv2.IMREAD_UNCHANGED) == mask).all()  # untouched

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": BOXES.tolist(), "b.png": [BOXES[0].tolist()], "c.png": [[0, 0, 9, 9]]}))
    (image_dir / "notes.txt").write_text("x")
    result = run_predict(tmp_path, f"image={image_dir}", f"boxes={boxes}", out="out2")
    assert result.returncode == 0, result.stderr[-2000:]
    said = result.stdout + result.stderr  # Hydra's log goes to stdout
    assert "1 files of" in said and "notes.txt" in said  # not dropped silently
    assert "names 1 images that are not in" in said and "c.png" in said
    predictions = json.loads((tmp_path / "out2" / "predictions.json").read_text())
    assert [(p["image"].rsplit("/", 1)[1], p["mask"].rsplit("/", 1)[1]) for p in predictions] == [
        ("a.png", "a_mask_0.png"),
        ("a.png", "a_mask_1.png"),
        ("b.png", "b_mask_0.png"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "box,needle",
    [("[400,10,500,90]", "has no area inside the 300x200 image"), ("[1,2,3]", "a box is [x0,y0,x1,y1]")],
)
def test_predict_cli_bad_box_is_one_line(tmp_path, box, needle):
    cv2.imwrite(str(tmp_path / "a.png"), scan())
    result = run_predict(tmp_path, f"image={tmp_path}/a.png", f"box={box}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr[-2000:]


def test_predict_and_eval_default_to_the_frame_of_the_run_that_made_the_weights(tmp_path):
    from omegaconf import OmegaConf

    from samlit.run.predict import chosen_frame
    from samlit.run.rundir import run_frame

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    weights = run / "export" / "sam_tiny_finetuned.pth"
    weights.write_bytes(b"x")
    (run / "config_resolved.yaml").write_text("data:\n  crop: none\n  crop_margin: 0.2\n")
    assert run_frame(None, str(weights)) == {"crop": "none", "crop_margin": 0.2}
    assert run_frame("random", str(tmp_path / "elsewhere.pth")) is None

    def cfg(model=None, **data):
        model = model or {"weights": str(weights), "decoder_weights": None}
        return OmegaConf.create({"model": model, "data": {"crop": None, "crop_margin": None, **data}})

    assert chosen_frame(cfg()) == {"crop": "none", "crop_margin": 0.2}
    assert chosen_frame(cfg(crop="box")) == {"crop": "box", "crop_margin": 0.2}
    assert chosen_frame(cfg(model={"weights": "random", "decoder_weights": None})) == {
        "crop": "none",
        "crop_margin": 0.1,
    }


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.crop=box", "data.crop_margin=0.25"],  # the documented keys, as train.py / eval.py take them
        ["crop=box", "crop_margin=0.25"],  # the older spelling
        ["data.crop=box", "crop_margin=0.25"],
        ["data.crop=box", "crop=box", "data.crop_margin=0.25", "crop_margin=0.25"],  # both, agreeing
    ],
)
def test_both_spellings_of_the_frame_keys_choose_the_same_frame(compose_cfg, overrides):
    from samlit.run.predict import chosen_frame

    cfg = compose_cfg("model.weights=random", *overrides, name="predict")
    assert chosen_frame(cfg) == {"crop": "box", "crop_margin": 0.25}


def test_the_older_spelling_still_names_nothing_by_default(compose_cfg):
    from samlit.run.predict import chosen_frame

    cfg = compose_cfg("model.weights=random", name="predict")
    assert cfg.data.crop is None and cfg.crop is None
    assert chosen_frame(cfg) == {"crop": "none", "crop_margin": 0.1}


@pytest.mark.parametrize(
    "overrides,key",
    [(["data.crop=box", "crop=none"], "crop"), (["data.crop_margin=0.1", "crop_margin=0.3"], "crop_margin")],
)
def test_both_spellings_disagreeing_is_one_line(compose_cfg, overrides, key):
    from samlit.run.predict import chosen_frame

    cfg = compose_cfg("model.weights=random", *overrides, name="predict")
    with pytest.raises(SamlitError) as error:
        chosen_frame(cfg)
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"data.{key}=") and f" and {key}=" in line and f"pass data.{key}= alone" in line


@pytest.mark.slow
def test_predict_cli_takes_both_spellings_alike(tmp_path):
    """``data.crop=box`` (train.py's key) and ``crop=box`` write the same masks; both, disagreeing: one line."""
    cv2.imwrite(str(tmp_path / "a.png"), scan())
    weights = export_sam(tuned("tiny"), tmp_path / "tiny.pth")  # the same model in both runs (random: not seeded)
    given = [f"image={tmp_path}/a.png", "box=[20,30,120,110]", f"model.weights={weights}"]
    for out, frame in (("new", ["data.crop=box", "data.crop_margin=0.2"]), ("old", ["crop=box", "crop_margin=0.2"])):
        result = run_predict(tmp_path, *given, *frame, out=out)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "frame: box crops (margin 0.2)" in result.stdout + result.stderr  # Hydra's log goes to stdout
    masks = [cv2.imread(str(tmp_path / out / "a_mask_0.png"), cv2.IMREAD_UNCHANGED) for out in ("new", "old")]
    assert masks[0].any() and np.array_equal(*masks)
    result = run_predict(tmp_path, *given, "data.crop=box", "crop=none", out="both")
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line.startswith("error: data.crop=box and crop=none disagree"), result.stderr


@pytest.mark.parametrize(
    "boxes",
    [["a", "b", "c", "d"], "[a,b,c,d]", {"x0": 1}, [float("nan"), 1, 5, 5], [1, 2, 3], [], "1,2,3"],
)
def test_malformed_boxes_are_one_line(boxes):
    from samlit.core.errors import SamlitError
    from samlit.run.predict import checked_boxes

    with pytest.raises(SamlitError, match=r"scan.png: a box is \[x0,y0,x1,y1\]"):
        checked_boxes(boxes, image_size=(200, 300), source="scan.png")


def test_a_box_written_as_text_is_read():
    from samlit.run.predict import checked_boxes

    assert checked_boxes("180,103,306,204", image_size=(300, 400), source="s").tolist() == [[180, 103, 306, 204]]
    assert checked_boxes("[180,103,306,204]", image_size=(300, 400), source="s").tolist() == [[180, 103, 306, 204]]


def test_two_images_with_one_stem_are_refused_before_any_work(tmp_path):
    from samlit.run.predict import check_outputs

    todo = [(tmp_path / "a" / "scan.png", BOXES), (tmp_path / "b" / "scan.jpg", BOXES[:1])]
    with pytest.raises(SamlitError, match="share the name 'scan': their masks would overwrite each other"):
        check_outputs(todo, tmp_path / "out")

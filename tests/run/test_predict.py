"""samlit's predict path gives what stock ``SamPredictor`` gives; ``python predict.py`` as a user runs it."""

from __future__ import annotations

import json
import re
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
    [
        ("[400,10,500,90]", "has no area inside the 300x200 image"),
        ("[1,2,3]", "a box is [x0,y0,x1,y1]"),
        ("[300,40,111,71]", "x1 (111) < x0 (300): boxes are [x0, y0, x1, y1]"),  # an xywh box (issue 26)
    ],
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
    from samlit.run.prompt_input import checked_boxes

    with pytest.raises(SamlitError, match=r"scan.png: a box is \[x0,y0,x1,y1\]"):
        checked_boxes(boxes, image_size=(200, 300), source="scan.png")


@pytest.mark.parametrize(
    "box,reversed_side,corners",
    [
        ([300, 40, 111, 71], "x1 (111) < x0 (300)", "[300, 40, 411, 111]"),  # issue 26: [x, y, width, height]
        ("10,200,50,20", "y1 (20) < y0 (200)", "[10, 200, 60, 220]"),
        ([[20, 30, 120, 110], [150, 60, 150, 170]], "x1 (150) = x0 (150)", "[150, 60, 300, 230]"),
    ],
)
def test_an_xywh_box_says_which_corner_comes_first(box, reversed_side, corners):
    """A box whose x1 <= x0 or y1 <= y0 (an [x, y, width, height] box) is one line saying so, with the corners the
    box would have as [x, y, width, height]; not "no area inside the image" (on the command line and in the JSON)."""
    from samlit.run.prompt_input import checked_boxes, table_prompts

    with pytest.raises(SamlitError) as error:
        checked_boxes(box, image_size=(600, 800), source="scan.png")
    message = str(error.value)
    assert f"has {reversed_side}: boxes are [x0, y0, x1, y1]" in message and "not [x, y, width, height]" in message
    assert f"if it is [x, y, width, height], pass {corners}" in message and "\n" not in message
    assert "no area" not in message
    entries = box if isinstance(box[0], list) else [box]
    with pytest.raises(
        SamlitError, match=rf'boxes=b.json "scan.png" instance \d: box .* has {re.escape(reversed_side)}'
    ):
        table_prompts([{"box": e} for e in entries], image_size=(600, 800), source='boxes=b.json "scan.png"')


def test_a_box_written_as_text_is_read():
    from samlit.run.prompt_input import checked_boxes

    assert checked_boxes("180,103,306,204", image_size=(300, 400), source="s").tolist() == [[180, 103, 306, 204]]
    assert checked_boxes("[180,103,306,204]", image_size=(300, 400), source="s").tolist() == [[180, 103, 306, 204]]


def test_two_images_with_one_stem_are_refused_before_any_work(tmp_path):
    from samlit.run.predict import check_outputs

    todo = [(tmp_path / "a" / "scan.png", BOXES), (tmp_path / "b" / "scan.jpg", BOXES[:1])]
    with pytest.raises(SamlitError, match="share the name 'scan': their masks would overwrite each other"):
        check_outputs(todo, tmp_path / "out")


# Corrective clicks: per instance (P_i, 2) xy pixels and (P_i,) labels, 1 on the stamp, 0 off it; counts differ.
CLICKS = [np.array([[70, 70], [40, 45]], np.float32), np.array([[205, 115]], np.float32)]
CLICK_LABELS = [np.array([1, 0]), np.array([1])]


def stock_prompt(predictor, *, box=None, points=None, labels=None, mask_input=None):
    """Stock ``SamPredictor.predict`` for one instance: its mask (H, W), IoU and low-res logits (256, 256)."""
    masks, iou, low_res = predictor.predict(
        point_coords=points,
        point_labels=labels,
        box=box,
        mask_input=None if mask_input is None else mask_input[None],
        multimask_output=False,
    )
    return masks[0], iou[0], low_res[0]


def assert_same(ours, i, stock, *, window=None) -> None:
    mask, iou, low_res = stock
    if window is None:
        assert np.array_equal(ours.masks[i], mask)
    else:
        x0, y0, x1, y1 = window
        assert np.array_equal(ours.masks[i][y0:y1, x0:x1], mask) and ours.masks[i].sum() == mask.sum()
    assert np.allclose(ours.low_res_logits[i], low_res, atol=1e-5) and np.isclose(ours.iou[i], iou, atol=1e-6)


def test_clicks_and_mask_input_match_sam_predictor():
    """A correction in the page frame: boxes + clicks (2 and 1 points), an instance by clicks alone, and an earlier
    pass's logits as the mask prompt give what stock ``SamPredictor.predict(point_coords, point_labels, box,
    mask_input, multimask_output=False)`` gives, instance by instance."""
    from samlit.run.predict import predict_prompts
    from samlit.run.prompt_input import as_prompts

    sam, image = tuned("tiny"), scan()
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    first = [stock_prompt(predictor, box=box) for box in BOXES]  # the box pass whose logits the correction takes
    boxes, points = [BOXES[0], BOXES[1], None], [*CLICKS, np.array([[200, 100], [10, 10]], np.float32)]
    labels = [*CLICK_LABELS, np.array([1, 0])]
    mask_input = np.stack([first[0][2], first[1][2], first[0][2]])
    ours = predict_prompts(sam, image, as_prompts(boxes, points, labels), mask_input=mask_input)
    assert ours.low_res_logits.shape == (3, 256, 256) and ours.low_res_logits.dtype == np.float32
    assert ours.masks.shape == (3, 200, 300) and ours.windows == [None] * 3
    for i, (box, coords, tags) in enumerate(zip(boxes, points, labels, strict=True)):
        stock = stock_prompt(predictor, box=box, points=coords, labels=tags, mask_input=mask_input[i])
        assert_same(ours, i, stock)
    assert ours.masks.any() and not np.array_equal(ours.masks[:2], np.stack([f[0] for f in first]))  # prompts count
    masks, iou = predict_masks(sam, image, boxes, points=points, labels=labels, mask_input=mask_input)
    assert np.array_equal(masks, ours.masks) and np.array_equal(iou, ours.iou)  # the keyword form, same path


def test_clicks_and_mask_input_in_crop_frame_are_sam_predictor_on_each_crop():
    """``crop=box``: each instance's logits live in its crop's frame (the same window for the same box and margin),
    so an earlier crop pass's logits are the mask prompt of the correction, seen through the same crop."""
    from samlit.run.predict import predict_prompts
    from samlit.run.prompt_input import as_prompts

    sam, image = tuned("tiny"), scan()
    first = predict_prompts(sam, image, as_prompts(BOXES), crop="box", crop_margin=0.15)
    ours = predict_prompts(
        sam,
        image,
        as_prompts(BOXES, CLICKS, CLICK_LABELS),
        mask_input=first.low_res_logits,
        crop="box",
        crop_margin=0.15,
    )
    predictor = SamPredictor(sam)
    for i, (box, coords, tags) in enumerate(zip(BOXES, CLICKS, CLICK_LABELS, strict=True)):
        window = crop_box(box, margin=0.15, image_size=image.shape[:2])
        assert ours.windows[i] == first.windows[i] == window
        x0, y0, x1, y1 = window
        predictor.set_image(image[y0:y1, x0:x1])
        origin = np.array([x0, y0], np.float32)
        stock = stock_prompt(
            predictor,
            box=box - np.tile(origin, 2),
            points=coords - origin,
            labels=tags,
            mask_input=first.low_res_logits[i],
        )
        assert_same(ours, i, stock, window=window)
    with pytest.raises(
        SamlitError, match=r"instance 0 has points but no box, and data\.crop=box crops around each box"
    ):
        predict_masks(sam, image, None, points=CLICKS[:1], labels=CLICK_LABELS[:1], crop="box")


def test_hq_model_takes_clicks_and_mask_input_as_hq_sams_predictor(tmp_path):
    """``model.hq=true`` goes through the same prompts: equal to stock ``segment_anything_hq``'s ``SamPredictor``
    (``hq_token_only=True``) given the box, the clicks and the mask input."""
    from samlit.run.predict import predict_prompts
    from samlit.run.prompt_input import as_prompts
    from tests.model.test_hq import hq_package, stock_tiny_hq

    torch.manual_seed(0)
    sam = build_sam(model_type="tiny", hq=True)
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    image, mask_input = scan(), np.random.default_rng(0).normal(0, 4, (2, 256, 256)).astype(np.float32)
    ours = predict_prompts(sam, image, as_prompts(BOXES, CLICKS, CLICK_LABELS), mask_input=mask_input)
    torch.save(sam.state_dict(), tmp_path / "hq.pth")
    stock = stock_tiny_hq(tmp_path / "hq.pth")
    predictor = hq_package()[0].SamPredictor(stock)
    predictor.set_image(image)
    for i, (box, coords, tags) in enumerate(zip(BOXES, CLICKS, CLICK_LABELS, strict=True)):
        masks, iou, low_res = predictor.predict(
            point_coords=coords,
            point_labels=tags,
            box=box,
            mask_input=mask_input[i][None],
            multimask_output=False,
            hq_token_only=True,
        )
        assert_same(ours, i, (masks[0], iou[0], low_res[0]))


def write_scan(path, seed: int = 0) -> np.ndarray:
    """``scan(seed)`` written as a PNG (OpenCV's BGR order); returns the RGB image predict.py reads from it."""
    cv2.imwrite(str(path), scan(seed)[:, :, ::-1])
    return scan(seed)


def test_predict_main_takes_clicks_and_an_earlier_runs_logits(compose_cfg, tmp_path):
    """The corrective-click loop as a user runs it: box alone, then box + clicks + ``mask_input=`` the first run's
    ``<stem>_low_res_logits.npy``; the written mask is ``predict_masks``' (stock SamPredictor's) for those prompts."""
    from samlit.run.predict import main

    weights = export_sam(tuned("tiny"), tmp_path / "tiny.pth")
    image = write_scan(tmp_path / "a.png")
    given = [f"model.weights={weights}", f"image={tmp_path}/a.png", "box=[20,30,120,110]", "device=cpu"]
    main(compose_cfg(*given, f"output={tmp_path}/first", name="predict"))
    logits = np.load(tmp_path / "first" / "a_low_res_logits.npy")
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    clicks = ["points=[[70,70],[40,45]]", "labels=[1,0]", f"mask_input={tmp_path}/first/a_low_res_logits.npy"]
    (row,) = main(compose_cfg(*given, *clicks, f"output={tmp_path}/second", name="predict"))
    assert row["points"] == [[70, 70], [40, 45]] and row["labels"] == [1, 0] and row["crop_window"] is None
    assert row["low_res_logits"] == f"{tmp_path}/second/a_low_res_logits.npy" and row["instance"] == 0
    sam = build_sam(model_type="tiny", weights=str(weights))
    expected, _ = predict_masks(sam, image, BOXES[:1], points=CLICKS[:1], labels=CLICK_LABELS[:1], mask_input=logits)
    written = cv2.imread(str(tmp_path / "second" / "a_mask_0.png"), cv2.IMREAD_UNCHANGED) > 0
    assert written.any() and np.array_equal(written, expected[0])
    assert (tmp_path / "second" / "a_overlay.png").is_file()


def test_predict_main_json_instances_and_a_mask_input_folder_in_crop_frame(compose_cfg, tmp_path):
    """``boxes=`` JSON mixing today's boxes with instance objects, ``data.crop=box``, then ``mask_input=`` the first
    run's output folder (``<stem>_low_res_logits.npy`` per image): each instance's logits go back through the same
    crop, and the written masks are ``predict_masks``' for those prompts."""
    from samlit.run.predict import main

    weights = export_sam(tuned("tiny"), tmp_path / "tiny.pth")
    (tmp_path / "scans").mkdir()
    image = write_scan(tmp_path / "scans" / "a.png")
    table = {
        "a.png": [BOXES[0].tolist(), {"box": BOXES[1].tolist(), "points": [[205, 115], [160, 70]], "labels": [1, 0]}]
    }
    (tmp_path / "boxes.json").write_text(json.dumps(table))
    given = [f"model.weights={weights}", f"image={tmp_path}/scans", f"boxes={tmp_path}/boxes.json", "device=cpu"]
    given += ["data.crop=box", "data.crop_margin=0.15"]
    main(compose_cfg(*given, f"output={tmp_path}/first", name="predict"))
    rows = main(compose_cfg(*given, f"mask_input={tmp_path}/first", f"output={tmp_path}/second", name="predict"))
    assert [(r["box"], r["points"], r["labels"], r["instance"]) for r in rows] == [
        (BOXES[0].tolist(), [], [], 0),
        (BOXES[1].tolist(), [[205, 115], [160, 70]], [1, 0], 1),
    ]
    assert [r["crop_window"] for r in rows] == [list(crop_box(b, margin=0.15, image_size=(200, 300))) for b in BOXES]
    logits = np.load(tmp_path / "first" / "a_low_res_logits.npy")
    expected, _ = predict_masks(
        build_sam(model_type="tiny", weights=str(weights)),
        image,
        BOXES,
        points=[None, [[205, 115], [160, 70]]],
        labels=[None, [1, 0]],
        mask_input=logits,
        crop="box",
        crop_margin=0.15,
    )
    for i, mask in enumerate(expected):
        written = cv2.imread(str(tmp_path / "second" / f"a_mask_{i}.png"), cv2.IMREAD_UNCHANGED) > 0
        assert written.any() and np.array_equal(written, mask), i


def test_points_without_a_box_in_crop_frame_are_one_line_before_the_model(compose_cfg, tmp_path):
    from samlit.run.predict import main

    write_scan(tmp_path / "a.png")
    cfg = compose_cfg("model.weights=nowhere.pth", f"image={tmp_path}/a.png", "points=[[70,70]]", "labels=[1]",
                      "data.crop=box", name="predict")  # fmt: skip
    with pytest.raises(SamlitError) as error:
        main(cfg)
    (line,) = str(error.value).splitlines()
    assert line == (
        f"{tmp_path}/a.png: instance 0 has points but no box, and data.crop=box crops around each box: give it a "
        "box, or pass data.crop=none"
    )


def test_cli_prompts_read_as_documented():
    """``box=`` / ``points=`` / ``labels=``: one box (or none) takes a flat list of points; several boxes a list per
    box ([] for none); points alone make instances of their own; one point may be written [x,y] with label 1."""
    from samlit.run.prompt_input import Given, given_prompts

    def read(box, points, labels):
        prompts = given_prompts(Given(box, points, labels), image_size=(200, 300), source="scan.png")
        return [(None if p.box is None else p.box.tolist(), p.points.tolist(), p.labels.tolist()) for p in prompts]

    box, other = BOXES[0].tolist(), BOXES[1].tolist()
    assert read(box, [[70, 70], [40, 45]], [1, 0]) == [(box, [[70, 70], [40, 45]], [1, 0])]
    assert read([box, other], [[[70, 70]], []], [[1], []]) == [(box, [[70, 70]], [1]), (other, [], [])]
    assert read([box, other], None, None) == [(box, [], []), (other, [], [])]
    assert read(None, [[70, 70]], [1]) == [(None, [[70, 70]], [1])]
    assert read(None, [[[70, 70]], [[205, 115], [0, 0]]], [[1], [1, 0]]) == [
        (None, [[70, 70]], [1]),
        (None, [[205, 115], [0, 0]], [1, 0]),
    ]
    assert read(box, [70, 70], 1) == [(box, [[70, 70]], [1])]


@pytest.mark.parametrize(
    "box,points,labels,needle",
    [
        (BOXES.tolist(), [[70, 70]], [1], "with 2 boxes, points= and labels= go per box: points=[[[x,y],...],"),
        (BOXES.tolist(), [[[70, 70]]], [[1]], "points= holds 1 lists for 2 boxes: give one list per box"),
        (BOXES.tolist(), [[[70, 70]], []], [1, 0], "points= holds 2 lists (one per instance), so labels= needs as"),
        ([20, 30, 120, 110], [[70, 70]], None, "points= needs labels=: one label per point, 1 (on the stamp) or 0"),
        ([20, 30, 120, 110], None, [1], "labels= without points=: give the points [[x,y], ...] they label"),
        ([20, 30, 120, 110], [[70, 70], [40, 45]], [1], "2 point(s) in points= but 1 label(s) in labels=: give one"),
        ([20, 30, 120, 110], [[70, 70]], [2], "labels= is a list of labels, 1 (positive: on the stamp) or 0 (neg"),
        ([20, 30, 120, 110], [[70, "x"]], [1], "points= is a list of points [[x,y], ...] (two finite numbers each"),
        (None, [[400, 10]], [1], "point [400.0, 10.0] lies outside the 300x200 image (points are [x,y] in its"),
        (None, [], [], "no box and no points: give points=[[x,y],...] labels=[1,...], or a box="),
    ],
)
def test_bad_cli_clicks_are_one_line(box, points, labels, needle):
    from samlit.run.prompt_input import Given, given_prompts

    with pytest.raises(SamlitError) as error:
        given_prompts(Given(box, points, labels), image_size=(200, 300), source="scan.png")
    (line,) = str(error.value).splitlines()
    assert line.startswith("scan.png") and needle in line, line


def test_json_instances_read_as_documented():
    """Today's ``{"scan.png": [[x0,y0,x1,y1], ...]}`` still reads; instance objects mix with boxes; one box or one
    object alone is one instance; an object without a box is prompted by its points."""
    from samlit.run.prompt_input import table_prompts

    def read(raw):
        prompts = table_prompts(raw, image_size=(200, 300), source='boxes=b.json "scan.png"')
        return [(None if p.box is None else p.box.tolist(), p.points.tolist(), p.labels.tolist()) for p in prompts]

    box, other = BOXES[0].tolist(), BOXES[1].tolist()
    assert read([box, other]) == [(box, [], []), (other, [], [])]
    assert read(box) == [(box, [], [])]
    assert read([box, {"box": other, "points": [[205, 115]], "labels": [0]}]) == [
        (box, [], []),
        (other, [[205, 115]], [0]),
    ]
    assert read({"points": [[70, 70]], "labels": [1]}) == [(None, [[70, 70]], [1])]


@pytest.mark.parametrize(
    "entry,needle",
    [
        (
            {"box": [20, 30, 120, 110], "point": [[70, 70]]},
            "unknown key 'point'; an instance is {\"box\": [x0,y0,x1,y1]",
        ),
        ({"box": [20, 30, 120, 110], "points": [[70, 70]], "labels": [1, 0]}, '1 point(s) in "points" but 2 label(s)'),
        ({"box": [20, 30, 120, 110], "points": [[70, 70]], "labels": [-1]}, '"labels" is a list of labels, 1 (posit'),
        ({"box": [20, 30, 120, 110], "points": [[70, 70]]}, '"points" needs "labels": one label per point'),
        ({"labels": [1]}, "no box and no points; an instance is {"),
        ({"box": [[20, 30, 120, 110], [1, 2, 3, 4]]}, "one box per instance, [x0,y0,x1,y1]"),
        ({"box": [1, 2, 3]}, "a box is [x0,y0,x1,y1] (four finite numbers, pixels)"),
        (7, "a box is [x0,y0,x1,y1]"),
    ],
)
def test_bad_json_instances_are_one_line(entry, needle):
    from samlit.run.prompt_input import table_prompts

    with pytest.raises(SamlitError) as error:
        table_prompts([BOXES[0].tolist(), entry], image_size=(200, 300), source='boxes=b.json "scan.png"')
    (line,) = str(error.value).splitlines()
    assert line.startswith('boxes=b.json "scan.png" instance 1: ') and needle in line, line


def test_mask_input_is_checked_before_the_model(tmp_path):
    """``mask_input=``: the logits predict.py writes ((N, 256, 256) float; SamPredictor's (N, 1, 256, 256) too), one
    file for one image or a folder of ``<stem>_low_res_logits.npy``; anything else is one line naming the file and
    the expected shape."""
    from samlit.run.prompt_input import as_prompts, mask_inputs, read_mask_input

    np.save(tmp_path / "two.npy", np.zeros((2, 256, 256), np.float32))
    np.save(tmp_path / "stock.npy", np.zeros((2, 1, 256, 256), np.float64))
    assert read_mask_input(tmp_path / "two.npy", count=2).shape == (2, 256, 256)
    assert read_mask_input(tmp_path / "stock.npy", count=2).dtype == np.float32
    expected = "expected (1, 256, 256) float logits, one row per instance (the <stem>_low_res_logits.npy predict.py"
    cases = {"two.npy": f"shape (2, 256, 256), {expected}"}
    cv2.imwrite(str(tmp_path / "mask.png"), np.zeros((256, 256), np.uint8))
    cases["mask.png"] = f"not a NumPy .npy file; {expected}"
    np.save(tmp_path / "binary.npy", np.ones((1, 256, 256), bool))
    cases["binary.npy"] = f"bool values, {expected} writes): logits, not a 0/1 mask"
    for name, needle in cases.items():
        with pytest.raises(SamlitError) as error:
            read_mask_input(tmp_path / name, count=1)
        (line,) = str(error.value).splitlines()
        assert line.startswith(f"mask_input={tmp_path / name}: ") and needle in line, line

    todo = [(tmp_path / "scan.png", as_prompts(BOXES)), (tmp_path / "other.png", as_prompts(BOXES[:1]))]
    with pytest.raises(SamlitError, match=r"holds no scan_low_res_logits\.npy for .*scan\.png: a mask-input folder"):
        mask_inputs(str(tmp_path), todo)
    with pytest.raises(SamlitError, match=r"two\.npy is one image's logits, for 2 images: pass the folder holding"):
        mask_inputs(str(tmp_path / "two.npy"), todo)
    np.save(tmp_path / "scan_low_res_logits.npy", np.ones((2, 256, 256), np.float32))
    np.save(tmp_path / "other_low_res_logits.npy", np.ones((1, 256, 256), np.float32))
    assert [a.shape for a in mask_inputs(str(tmp_path), todo)] == [(2, 256, 256), (1, 256, 256)]
    assert mask_inputs(None, todo) == [None, None]


@pytest.mark.slow
def test_predict_cli_bad_clicks_are_one_line(tmp_path):
    write_scan(tmp_path / "a.png")
    result = run_predict(tmp_path, f"image={tmp_path}/a.png", "box=[20,30,120,110]", "points=[[70,70],[40,45]]",
                         "labels=[1]")  # fmt: skip
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line == (
        f"error: {tmp_path}/a.png: 2 point(s) in points= but 1 label(s) in labels=: give one label per point "
        "(1 positive, 0 negative)"
    ), result.stderr[-2000:]

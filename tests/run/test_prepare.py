"""The prepare stage (``samlit.run.prepare``): the only writer of the store. ``python prepare.py`` (and its alias
``embed.py``) fills it and trains nothing, a second run finds every entry, DDP ranks share the work, a damaged entry
is prepared again, ``cache=none`` prepares nothing, and a dataset that meets a missing entry says to run
``python prepare.py``. Also: the layers (``docs/design.md``) import only downwards."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samlit.core.errors import SamlitError
from samlit.data.dataset import collate_samples
from samlit.data.store import store_info
from samlit.model.sam import feature_names
from samlit.run import prepare as prepare_stage
from samlit.run.prepare import PrepareStats, prepare
from samlit.run.setup import Job, build_datamodule, setup
from tests.conftest import FAST, REPO

LINE = re.compile(
    r"prepared \((\w+)[^)]*, features (\S+)\): (\d+) entries: (\d+) already prepared, (\d+) made "
    r"\((\d+) encoded, (\d+) damaged rebuilt"
)


def run_prepare(root: Path, *overrides: str, script: str = "prepare.py") -> list[dict]:
    """Run ``script``; returns each rank's summary line as a dict (mode, features, entries, found, made, ...)."""
    command = [sys.executable, str(REPO / script), f"paths.root_dir={root}", f"paths.cache_dir={root}/cache"]
    result = subprocess.run([*command, *FAST, *overrides], capture_output=True, text=True, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    names = ("mode", "features", "entries", "found", "made", "encoded", "damaged")
    return [
        {k: v if k in ("mode", "features") else int(v) for k, v in zip(names, m, strict=True)}
        for m in LINE.findall(result.stdout + result.stderr)
    ]


def store_of(root: Path) -> dict:
    info = store_info(root / "cache" / "store", verify=True)
    assert info["damaged"] == 0
    return info


def cheap_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prepare stage with an encoder that costs nothing (each embedding filled with its image's mean): for
    tests of the store, not of the model."""

    def encode(sam, image: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = float(image.float().mean())
        shapes = {
            "embedding": (1, 256, 64, 64),
            "interm_embedding": (1, 64, 64, sam.image_encoder.patch_embed.proj.out_channels),
        }
        return {name: torch.full(shapes[name], mean) for name in feature_names(sam)}

    monkeypatch.setattr(prepare_stage, "encode_features", encode)


def fast_job(compose_cfg, *overrides: str) -> Job:
    """A prepare job (``conf/prepare.yaml``) as ``python prepare.py`` builds it, in-process."""
    return setup(compose_cfg(*FAST, "data.num_workers=0", *overrides, name="prepare"), with_loggers=False, needs=())


@pytest.mark.slow
def test_prepare_py_fills_the_store_trains_nothing_and_a_second_run_finds_every_entry(tmp_path):
    (cold,) = run_prepare(tmp_path)
    assert cold["mode"] == "disk" and cold["features"].startswith("tiny-") and cold["features"].endswith("-float16")
    assert cold["found"] == cold["damaged"] == 0 and cold["made"] == cold["entries"] > cold["encoded"] > 0
    info = store_of(tmp_path)
    # the run's own frame with the encoder's features; the report's other frame (its ceiling) without
    assert info["entries"] == cold["entries"]
    assert info["by_features"] == {cold["features"]: cold["encoded"], "": cold["made"] - cold["encoded"]}
    assert info["bytes"] > cold["encoded"] * 256 * 64 * 64 * 2
    (run_dir,) = (tmp_path / "outputs" / "prepare" / "runs").iterdir()
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()  # trains nothing
    assert not (tmp_path / "outputs" / "train").exists()

    # a second run, same overrides: every entry found, nothing made
    (warm,) = run_prepare(tmp_path)
    assert (warm["entries"], warm["found"], warm["made"], warm["encoded"]) == (cold["entries"], cold["entries"], 0, 0)
    assert warm["features"] == cold["features"]

    # augmentation views: only the new views of the training items are made (and encoded), the rest is found
    (views,) = run_prepare(tmp_path, "data.augment.views=2")
    assert views["found"] == cold["entries"] and views["made"] == views["encoded"] > 0 and views["made"] % 2 == 0
    assert views["entries"] == cold["entries"] + views["made"] and store_of(tmp_path)["entries"] == views["entries"]
    (again,) = run_prepare(tmp_path, "data.augment.views=2")
    assert (again["found"], again["made"]) == (views["entries"], 0)


@pytest.mark.slow
def test_embed_py_is_an_alias_of_prepare_py(tmp_path):
    """The old command still works: the same stage, the same store (``prepare.py`` then finds every entry)."""
    (embedded,) = run_prepare(tmp_path, script="embed.py")
    assert embedded["made"] == embedded["entries"] == store_of(tmp_path)["entries"] > 0
    (prepared,) = run_prepare(tmp_path)
    assert (prepared["found"], prepared["made"], prepared["features"]) == (
        embedded["entries"],
        0,
        embedded["features"],
    )


@pytest.mark.slow
def test_ddp_ranks_share_the_prepare_stage(tmp_path):
    """Two CPU processes (gloo): each makes its share, together every entry once."""
    ranks = run_prepare(tmp_path, "+trainer.strategy=ddp", "trainer.devices=2")
    assert len(ranks) == 2
    total = store_of(tmp_path)["entries"]
    assert all(rank["entries"] == total for rank in ranks)
    assert sum(rank["made"] for rank in ranks) == total
    assert all(0 < rank["made"] < total for rank in ranks)


def test_a_damaged_entry_is_logged_and_prepared_again(compose_cfg, monkeypatch, caplog):
    cheap_encoder(monkeypatch)
    job = fast_job(compose_cfg)
    first = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)
    assert first.made == first.entries > 0 and first.damaged == 0
    store = job.datamodule.store
    paths = sorted(store.root.rglob("*.safetensors"))
    assert len(paths) == first.entries
    truncated, altered = paths[0], paths[1]
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(altered.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the tensors: parses, but its SHA-256 no longer matches
    altered.write_bytes(bytes(data))

    job = fast_job(compose_cfg)  # a new process's store: every entry's SHA-256 is checked on its first read
    with caplog.at_level(logging.WARNING, logger="samlit.run.prepare"):
        again = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)
    assert (again.entries, again.damaged, again.made, again.found) == (first.entries, 2, 2, first.entries - 2)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all("damaged" in w and "\n" not in w for w in warned)
    reasons = {w.split()[1]: w for w in warned}  # "store: <path> is damaged (<reason>); preparing it again"
    assert "unreadable" in reasons[str(truncated)] and "checksum mismatch" in reasons[str(altered)]
    assert store_info(store.root, verify=True)["damaged"] == 0


def test_a_second_prepare_in_the_same_process_finds_every_entry(compose_cfg, monkeypatch):
    cheap_encoder(monkeypatch)
    job = fast_job(compose_cfg)
    first = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule)
    again = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule)
    assert first.found == 0 and first.made == first.encoded == first.entries > 0  # the run's own frame only
    assert (again.entries, again.found, again.made, again.bytes_written) == (first.entries, first.entries, 0, 0)
    # the loaders now read what was prepared: every group carries its embedding
    group = job.datamodule.dataset("train", train=True)[0]
    assert group["embedding"].shape == (1, 256, 64, 64) and group["embedding"].dtype == torch.float16
    assert "image" not in group


def test_hq_mode_prepares_the_early_feature_beside_the_embedding(compose_cfg, monkeypatch):
    """An entry prepared for plain SAM lacks HQ mode's early feature: an HQ dataset says to run prepare.py, and an
    HQ run makes the entry again with both features under the same key; a plain run then finds it, and its groups
    carry the embedding alone. A warm HQ step runs no encoder."""
    cheap_encoder(monkeypatch)
    plain, hq = fast_job(compose_cfg), fast_job(compose_cfg, "model.hq=true")
    first = prepare(trainer=plain.trainer, module=plain.module, datamodule=plain.datamodule)
    hq.datamodule.features, hq.datamodule.feature_names = plain.datamodule.features, hq.module.feature_names
    with pytest.raises(SamlitError, match=r"holds no interm_embedding .*run python prepare.py"):
        hq.datamodule.dataset("train", train=True)[0]
    upgraded = prepare(trainer=hq.trainer, module=hq.module, datamodule=hq.datamodule)
    assert hq.datamodule.features == plain.datamodule.features  # the same keys: one entry per item
    assert (upgraded.entries, upgraded.found, upgraded.made, upgraded.encoded) == (
        first.entries,
        0,
        *[first.entries] * 2,
    )
    group = hq.datamodule.dataset("train", train=True)[0]
    assert group["interm_embedding"].shape == (1, 64, 64, 96) and group["interm_embedding"].dtype == torch.float16
    again = prepare(trainer=plain.trainer, module=plain.module, datamodule=plain.datamodule)
    assert (again.found, again.made) == (first.entries, 0)
    assert "interm_embedding" not in plain.datamodule.dataset("train", train=True)[0]
    warm = prepare(trainer=hq.trainer, module=hq.module, datamodule=hq.datamodule)
    assert (warm.found, warm.made) == (first.entries, 0)
    batch = [hq.datamodule.dataset("train", train=True)[i] for i in range(2)]
    terms, _ = hq.module.model_step(collate_samples(batch), "train")
    assert terms["loss"].requires_grad and hq.module.encoder_calls == 0


def test_a_command_prepares_only_the_splits_it_reads(compose_cfg, monkeypatch):
    """``eval.py`` reads the test split only: it prepares that, and a later training run the rest."""
    cheap_encoder(monkeypatch)
    job = fast_job(compose_cfg)
    test_items = len(job.datamodule.items("test"))
    tested = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, splits=("test",))
    assert tested.entries == tested.made == tested.encoded == test_items > 0
    trained = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule)
    assert trained.found == test_items and trained.made == trained.entries - test_items > 0


def test_cache_none_prepares_nothing_and_the_encoder_runs_in_the_step(compose_cfg, tmp_path):
    job = fast_job(compose_cfg, "cache=none")
    stats = prepare(trainer=job.trainer, module=job.module, datamodule=job.datamodule, other_frame=True)
    assert stats == PrepareStats() and job.datamodule.store is None and job.datamodule.features is None
    assert not (tmp_path / "cache" / "store").exists()
    group = job.datamodule.dataset("test", train=False)[0]
    assert "embedding" not in group and group["image"].dtype == torch.uint8 and group["image"].shape[0] == 3
    assert max(group["image"].shape[1:]) == 1024
    assert job.module.image_embedding(group).shape == (1, 256, 64, 64) and job.module.encoder_calls == 1


def test_a_dataset_reading_a_missing_or_damaged_entry_names_python_prepare_py(compose_cfg):
    datamodule = build_datamodule(compose_cfg(*FAST, "data.num_workers=0").data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.features = "tiny-0123456789abcdef-float16"  # as prepare() sets it, but nothing was prepared
    dataset = datamodule.dataset("test", train=False)
    with pytest.raises(SamlitError) as error:
        dataset[0]
    message = str(error.value)
    assert "\n" not in message and "python prepare.py" in message and "is not prepared" in message
    path = datamodule.store.path(dataset.keys[0][0])
    assert str(path) in message

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an entry")
    with pytest.raises(SamlitError) as error:
        dataset[0]
    message = str(error.value)
    assert "\n" not in message and "python prepare.py" in message and "damaged" in message and str(path) in message


# The layers (docs/design.md, "Layers and layout"): each imports only the layers below it, and the model knows
# nothing of the data layer (a group's tensors are its whole contract: samlit.core.batch).
LAYERS = ("core", "data", "model", "run", "launch")
ALSO_FORBIDDEN = {"model": {"data"}}
SHIMS = {"samlit/cli.py", "samlit/cache.py", "samlit/export.py", "samlit/sweep.py", "samlit/data/__main__.py"}
SHIM_MODULES = {Path(shim).stem for shim in SHIMS if shim.count("/") == 1}  # samlit.cli, ...: no layer's to import


def imports(path: Path, *, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` (at any depth: inside functions too), relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the file's package
                package = path.relative_to(root).with_suffix("").parts[: -node.level]
                module = ".".join([*package, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "samlit":  # from samlit import data
                found += [(node.lineno, f"samlit.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return sorted(found)


def layer_violations(root: Path = REPO) -> list[str]:
    """``<file>:<line> (<layer>) imports <module>`` for each import of a layer above the file's own (or of an
    entry shim) under ``root/samlit``."""
    problems = []
    for path in sorted((root / "samlit").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        parts = path.relative_to(root / "samlit").parts
        if relative in SHIMS or len(parts) < 2 or parts[0] not in LAYERS:
            continue
        layer = parts[0]
        forbidden = set(LAYERS[LAYERS.index(layer) + 1 :]) | ALSO_FORBIDDEN.get(layer, set()) | SHIM_MODULES
        for line, name in imports(path, root=root):
            if name.startswith("samlit.") and name.split(".")[1] in forbidden:
                problems.append(f"{relative}:{line} ({layer}) imports {name}")
    return problems


def test_samlit_imports_only_downwards():
    """core <- data <- model <- run <- launch; nothing in samlit/model imports samlit.data; no layer imports an
    entry shim (``SHIMS``: they stand outside the layers)."""
    assert layer_violations() == []


def test_the_data_layer_never_imports_sams_modeling_code():
    """``data/`` hands out tensors in SAM's frame (it may use SAM's resize) and knows nothing of the model."""
    found = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / "samlit" / "data").rglob("*.py"))
        if path.relative_to(REPO).as_posix() not in SHIMS
        for line, name in imports(path, root=REPO)
        if name.startswith("segment_anything.modeling") or name in ("segment_anything", "segment_anything.build_sam")
    ]
    assert found == []


def test_the_layer_check_sees_every_kind_of_import(tmp_path):
    """The check itself: an import inside a function, ``from samlit import x``, ``import samlit.x`` and a
    relative import all count; the layers below and the model's own modules do not."""
    fake = tmp_path / "samlit" / "model" / "m.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "from samlit.core import errors\nfrom . import sam\n"
        "def f():\n    from samlit.data import store\n"
        "from samlit import run, __version__\nimport samlit.launch.entry\nfrom ..cli import main\n"
    )
    assert layer_violations(tmp_path) == [
        "samlit/model/m.py:4 (model) imports samlit.data",
        "samlit/model/m.py:5 (model) imports samlit.run",
        "samlit/model/m.py:6 (model) imports samlit.launch.entry",
        "samlit/model/m.py:7 (model) imports samlit.cli",
    ]

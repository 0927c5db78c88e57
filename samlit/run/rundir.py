"""A run dir: what a train.py run leaves in it, where, and that it belongs to one run.

    <run>/config_resolved.yaml      the run's whole config, resolved (its frame: data.crop, data.crop_margin)
    <run>/checkpoints/<name>.ckpt   last.ckpt and the best one (named in metrics.json -> best_checkpoint)
    <run>/export/                   sam_<model>_finetuned.pth, sam_<model>_decoder.pth (samlit.run.export)
    <run>/metrics.json              the report's numbers (also what eval.py writes into its own run dir)

Every command that reads a run (export, eval, predict) finds these files here. The Hydra callback that checks a
run dir can be written before Hydra makes it is ``samlit.launch.rundir.RunDirCheck``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from samlit.core.errors import SamlitError

log = logging.getLogger(__name__)

CONFIG = "config_resolved.yaml"
CHECKPOINTS = "checkpoints"
EXPORT = "export"
METRICS = "metrics.json"
NOT_FILES = ("official", "random")  # model.weights values that name no file


def config_path(run_dir: Path) -> Path:
    """The run's resolved config."""
    return run_dir / CONFIG


def export_dir(run_dir: Path) -> Path:
    """Where the run's exports go."""
    return run_dir / EXPORT


def run_of(path: Path) -> Path:
    """The run dir that ``path`` (a file of ``<run>/export`` or ``<run>/checkpoints``) sits in."""
    return path.parent.parent


def claim_run_dir(run_dir: Path, *, marker: str, resume: str | None = None) -> None:
    """One line, before any work, when ``run_dir`` already holds ``marker`` (a file the command writes once per
    run: another run's, e.g. ``hydra.run.dir=<an older run>``), unless this run resumes from a checkpoint of that
    dir (``ckpt_path=<run_dir>/checkpoints/...``), which carries it on."""
    if not (run_dir / marker).exists():
        return
    if resume and Path(resume).expanduser().resolve().is_relative_to(run_dir.resolve()):
        return
    raise SamlitError(
        f"hydra.run.dir={run_dir} already holds another run ({run_dir / marker}); pick a new dir (or leave "
        f"hydra.run.dir unset), or resume that run with ckpt_path={run_dir}/{CHECKPOINTS}/last.ckpt"
    )


def writable_problem(path: Path) -> str | None:
    """Why ``path`` (a run dir, a sweep's dir) cannot be made and written into, or ``None``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        return f"{blocker} is a file" if blocker else error.strerror or str(error)
    return None


def run_config(*weights: str | None) -> Any:
    """The resolved config of the train.py run that wrote the first of ``weights`` that sits in a run dir
    (``<run>/export/*.pth`` or ``<run>/checkpoints/*.ckpt``), or ``None``."""
    for path in (Path(str(w)).expanduser() for w in weights if w and w not in NOT_FILES):
        config = config_path(run_of(path))
        if path.is_file() and config.is_file():
            return OmegaConf.load(config)
    return None


def run_frame(*weights: str | None) -> dict[str, Any] | None:
    """``{"crop", "crop_margin"}`` of the run that wrote ``weights`` (``run_config``), or ``None``."""
    config = run_config(*weights)
    if config is None:
        return None
    data = config.get("data", {})
    return {"crop": data.get("crop", "none"), "crop_margin": data.get("crop_margin", 0.1)}


def follow_run_model(model: Any, *, given: list[str]) -> None:
    """``model`` (a ``model`` config node) takes ``hq`` and ``hq_token_only`` from the run that wrote its weights,
    unless a ``model.hq*`` override was ``given``: eval.py and predict.py then decode as that run did."""
    config = run_config(model.get("decoder_weights"), model.get("weights"))
    if config is None or any(o.lstrip("+~").startswith("model.hq") for o in given):
        return
    run = {key: config.get("model", {}).get(key, default) for key, default in (("hq", False), ("hq_token_only", True))}
    if all(model.get(key) == value for key, value in run.items()):
        return
    log.info("model of the run that made these weights: model.hq=%s model.hq_token_only=%s", *run.values())
    with open_dict(model):
        model.hq, model.hq_token_only = run["hq"], run["hq_token_only"]


def run_checkpoint(source: Path) -> tuple[Path, Path]:
    """``source`` (a run dir or one of its ``.ckpt``) -> (checkpoint, run dir). A run dir gives its best one."""
    if source.is_file():
        return source, run_of(source)
    metrics = source / METRICS
    best = OmegaConf.load(metrics).get("best_checkpoint") if metrics.is_file() else None
    for candidate in (Path(best) if best else None, source / CHECKPOINTS / "last.ckpt"):
        if candidate is not None and candidate.is_file():
            return candidate, source
    raise SamlitError(f"{source} holds no checkpoint ({CHECKPOINTS}/*.ckpt); pass a run dir of train.py or a .ckpt")

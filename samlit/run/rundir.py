"""A run dir belongs to one run: a command never writes over another run's results in it."""

from __future__ import annotations

from pathlib import Path

from samlit.core.errors import SamlitError


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
        f"hydra.run.dir unset), or resume that run with ckpt_path={run_dir}/checkpoints/last.ckpt"
    )

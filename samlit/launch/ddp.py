"""DDP under Hydra: worker processes re-enter the *same* Hydra job (same run dir, same overrides).

Lightning's script launcher starts ranks 1..N-1 as ``python train.py <sys.argv[1:]> hydra.run.dir=<run.dir>``.
Under Hydra that is wrong twice over (the lightning-hydra-template trap): in a multirun, ``sys.argv`` still
holds ``-m`` and the comma lists, so every worker would start a sweep of its own; and ``hydra.run.dir`` is
the single-run pattern, not the job's dir, so workers would make run dirs of their own. ``HydraDDPStrategy``
starts each worker as a plain run of this job's overrides (``hydra.overrides.task``: the swept values
included, whatever the sweeper) in this job's output dir, writing no ``.hydra/`` of its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

log = logging.getLogger(__name__)
_workers: list[subprocess.Popen] = []  # started by this process for the current job


def quote(value: str) -> str:
    """A Hydra override value that stays one literal string (spaces, commas, ``=``, quotes)."""
    return "'" + value.replace("'", "\\'") + "'"


def worker_command(local_rank: int) -> tuple[Sequence[str], str]:
    """``(argv, cwd)`` that starts rank ``local_rank`` of the current Hydra job."""
    import __main__

    hydra = HydraConfig.get()
    cwd = hydra.runtime.cwd
    if getattr(__main__, "__spec__", None) is None:
        command = [sys.executable, os.path.join(cwd, sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra.overrides.task)
    command += [
        f"hydra.run.dir={quote(hydra.runtime.output_dir)}",
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",  # its log: <run dir>/<job name>_rank<k>.log
        "hydra.output_subdir=null",
    ]
    return command, cwd


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher (same env vars, same process watchdog), with ``worker_command``."""

    def _call_children_scripts(self) -> None:
        if not HydraConfig.initialized():
            return super()._call_children_scripts()
        lightning_command = subprocess_script._hydra_subprocess_cmd
        subprocess_script._hydra_subprocess_cmd = worker_command
        try:
            super()._call_children_scripts()
        finally:
            subprocess_script._hydra_subprocess_cmd = lightning_command
            _workers.extend(self.procs)


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose script launcher is ``HydraJobLauncher`` (``trainer=ddp`` / ``trainer=ddp_cpu``).

    Takes ``DDPStrategy``'s keyword arguments (``process_group_backend``, ``find_unused_parameters``, ...).
    """

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


@contextmanager
def job_scope(*, worker_timeout_s: float = 120.0) -> Iterator[None]:
    """Undo, when a job ends, the DDP state (and an unfinished W&B run) it leaves in this process.

    A sweep runs its jobs one after another in one process. Lightning's launcher sets ``LOCAL_RANK``,
    ``WORLD_SIZE``, ``MASTER_PORT``, ... in ``os.environ`` and keeps the process group; left there, the next job
    would take itself for a worker and start none. So: wait for this job's workers, destroy the process group
    and restore the environment.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        while _workers:
            worker = _workers.pop()
            try:
                worker.wait(timeout=worker_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("DDP worker %d still ran %.0f s after rank 0 ended: killed", worker.pid, worker_timeout_s)
                worker.kill()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:  # a job that failed before closing its loggers
            wandb.finish(exit_code=1)  # else the next job's WandbLogger would log into this run

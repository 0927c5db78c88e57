"""What every Hydra entry point (train.py, eval.py, prepare.py, predict.py) wraps its job in.

``@entry`` gives a job: the configs' resolvers, a quiet console (``samlit.launch.console``), a clean process
after the job (``samlit.launch.ddp.job_scope``: a sweep runs its jobs in one process), and user errors as one
line (``error: ...``, exit 2) instead of a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import MissingMandatoryValue

from samlit.core.errors import find_user_error
from samlit.launch.resolvers import in_sweep  # importing it registers the configs' ${samlit.*:} resolvers


def entry(func: Callable[..., Any] | None = None, *, quiet_ranks: bool = False) -> Any:
    """Decorate an entry point's job function (see the module docstring): ``@entry`` or
    ``@entry(quiet_ranks=True)`` (DDP ranks > 0 print warnings only; rank 0 tells the story)."""

    def decorate(job_function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(job_function)
        def job(*args: Any, **kwargs: Any) -> Any:
            # Lightning is imported here, once Hydra has set up logging: imported earlier it would add a console
            # handler of its own and print its messages ("Seed set to 0") twice or around Hydra's.
            from lightning.pytorch.utilities import rank_zero_only

            from samlit.launch.console import quiet_lightning, quiet_worker
            from samlit.launch.ddp import job_scope

            with job_scope():
                quiet_lightning()
                if quiet_ranks:
                    quiet_worker(rank_zero_only.rank)
                return job_function(*args, **kwargs)

        return exit_on_user_error(job)

    return decorate(func) if func is not None else decorate


def exit_on_user_error(func: Callable[..., Any]) -> Callable[..., Any]:
    """A SamlitError or a missing config value becomes ``error: ...`` and exit 2.

    In a sweep job the line is printed and the error raised instead: Hydra marks that job failed, runs the
    others, and reports the failure at the end (an exit would end the whole sweep).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MissingMandatoryValue as err:
            sys.stderr.write(f"error: config key {err.full_key} is required: pass {err.full_key}=...\n")
            if in_sweep():
                raise
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None:
                raise
            sys.stderr.write(f"error: {user_error}\n")
            if in_sweep():
                raise user_error from None
        sys.stderr.flush()
        sys.exit(2)

    return wrapper

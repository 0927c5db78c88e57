"""User-facing errors: one line that names the file or config key and the fix."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import MissingMandatoryValue


class SamlitError(Exception):
    """A bad input the user can fix (missing data, wrong weights file, ...).

    Entry points print ``error: <message>`` on one line and exit with status 2, without a traceback.
    """


class WriteError(SamlitError, OSError):
    """A file could not be written (disk full, read-only, not a directory): names the path and the fix."""


def find_user_error(err: BaseException) -> SamlitError | None:
    """The SamlitError behind ``err``, also when Hydra's ``instantiate`` wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, SamlitError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def in_sweep() -> bool:
    """True inside a job of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def exit_on_user_error(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an entry point: a SamlitError or a missing config value becomes ``error: ...`` and exit 2.

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

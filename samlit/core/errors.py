"""User-facing errors: one line that names the file or config key and the fix."""

from __future__ import annotations


class SamlitError(Exception):
    """A bad input the user can fix (missing data, wrong weights file, ...).

    Entry points print ``error: <message>`` on one line and exit with status 2, without a traceback
    (``samlit.launch.entry``).
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

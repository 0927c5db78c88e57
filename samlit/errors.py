"""User-facing errors: one line that names the file or config key and the fix."""


class SamlitError(Exception):
    """A bad input the user can fix (missing data, wrong weights file, ...).

    Entry points print ``error: <message>`` on one line and exit with status 2, without a traceback.
    """

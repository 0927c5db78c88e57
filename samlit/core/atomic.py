"""Atomic file writes: write a temp file next to the target, then ``os.replace`` it (never a half-written
file, never a lost old one); and reading such a file back, when it is there."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

from samlit.core.errors import SamlitError, WriteError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def replacing(path: Path | str) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` (parents created) only when the block ends without error.

    An ``OSError`` on the way (disk full, read-only folder, a file where a folder should be) leaves ``path`` as it
    was and no temp file, and is raised as ``WriteError``: one line naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise write_error(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from error
        raise


def write_error(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error)
    wrapped = WriteError(f"cannot write {path}: {reason}; free space there or choose a writable folder")
    wrapped.strerror = reason  # callers that add their own fix quote the reason alone
    return wrapped


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created)."""
    with replacing(path) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def torch_save(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to ``path`` atomically, streamed (no in-memory copy of a multi-GB state_dict)."""
    with replacing(path) as handle:
        torch.save(obj, handle)
    return Path(path)


def write_entry(path: Path, data: bytes, *, what: str, fix: str) -> None:
    """``write_bytes`` for a store's entry: an ``OSError`` is one line, ``cannot write the <what> at <path>:
    <reason>; <fix>``."""
    try:
        write_bytes(path, data)
    except OSError as error:
        raise SamlitError(f"cannot write the {what} at {path}: {error.strerror or error}; {fix}") from error


def read_if_present(path: Path, *, what: str, fix: str) -> bytes | None:
    """The bytes of ``path``, ``None`` when it does not exist; any other ``OSError`` (permissions, a folder where
    the file should be) is one line: ``cannot read the <what> at <path>: <reason>; <fix>``."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SamlitError(f"cannot read the {what} at {path}: {error.strerror or error}; {fix}") from error

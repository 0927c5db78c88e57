"""Download a file whose SHA-256 is known: streamed to a temp file next to the target with a progress bar,
hashed on the way, renamed only when the hash matches. A file already in place is reused once it verifies."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from samlit.core import atomic
from samlit.core.digests import CHUNK, file_sha256
from samlit.core.errors import SamlitError

log = logging.getLogger(__name__)


def download(*, url: str, dest: Path | str, sha256: str, timeout_s: float = 60.0, progress: bool = True) -> Path:
    """Make ``dest`` hold the file at ``url`` with SHA-256 ``sha256``; returns ``dest``.

    A verified ``dest`` is reused without network access; one that fails the hash is downloaded again. On a
    network error or a hash mismatch nothing is left behind and a one-line ``SamlitError`` says what to do.
    """
    dest = Path(dest).expanduser()
    if dest.is_file():
        if file_sha256(dest) == sha256:
            return dest
        log.warning("%s does not match its SHA-256 %s...; downloading it again", dest, sha256[:12])
    by_hand = f"download {url} by hand to {dest} (or pass model.weights=/path/to/{dest.name})"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic.replacing(dest) as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(
                TextColumn(f"[bold]{dest.name}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                disable=not progress,
                transient=True,
            ) as bar:
                task = bar.add_task("download", total=total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
            if digest.hexdigest() != sha256:  # raising here removes the temp file; dest stays as it was
                raise _Mismatch(digest.hexdigest())
    except _Mismatch as mismatch:
        raise SamlitError(
            f"download of {url} has SHA-256 {mismatch.args[0][:12]}..., expected {sha256[:12]}...; "
            f"nothing was kept. Retry, or {by_hand}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise SamlitError(f"cannot download {url} ({reason}); {by_hand}") from None
    log.info("downloaded %s to %s (SHA-256 verified)", url, dest)
    return dest


class _Mismatch(Exception):
    """The downloaded bytes do not have the expected SHA-256."""

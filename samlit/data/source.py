"""The interface between a data layout and the one datamodule: a ``Source`` finds an image set's records, checks
them, counts their instances and reads one record into a ``InstanceSample``. Sources: StaVer (``samlit.data.staver``),
COCO instance JSON (``samlit.data.coco``) and image/label folders (``samlit.data.folder``).

A record is any picklable object with a ``key`` (the image's file stem): splits, item seeds and embedding-cache
views are functions of keys, so the same images give the same split whatever their source.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from samlit.data.checks import BadFile
from samlit.data.sample import InstanceCensus, InstanceSample


class Source(Protocol):
    root: Path  # where the data is (for messages and the report)
    min_area: int  # instances (or regions) smaller than this many px are noise

    def prepare(self) -> None:
        """Make the data when the source makes it (``data=synthetic`` generates its scans once); else nothing."""

    def find(self) -> list[Any]:
        """Every record, sorted by key; one-line ``SamlitError`` when the data is not there at all."""

    def stray(self, records: list[Any]) -> list[str]:
        """Files of the data folders that no record uses, each as ``"<path>: <why>"``."""

    def check(self, records: list[Any], *, on_bad_file: str, max_pixels: int) -> tuple[list[Any], list[BadFile]]:
        """Good records and bad ones (warned, or one-line ``SamlitError`` with ``on_bad_file="raise"``): whatever
        opening or reading a file raises, and a file over ``max_pixels`` pixels, makes a bad one
        (``samlit.data.checks.image_size``)."""

    def census(self, record: Any) -> InstanceCensus:
        """The record's instances by kind, without decoding its image."""

    def read(self, record: Any) -> InstanceSample:
        """Image (H, W, 3) uint8 RGB, instance masks (N, H, W) bool, boxes (N, 4) xyxy, instances in canonical order."""

    def depends_on(self, record: Any) -> tuple[list[Path], dict[str, Any]]:
        """What ``read(record)`` gives depends on: the files it reads and every other input (settings, a JSON's
        annotations of the image), as JSON-able values. The store keys prepared items by them."""

    def warn(self, census: Iterable[InstanceCensus]) -> None:
        """Data-set-wide warnings from the census (once, not per file)."""

    def counts(self, census: Iterable[InstanceCensus]) -> dict[str, Any]:
        """Source-specific counts for the report."""

    def user_splits(self) -> dict[str, set[str]] | None:
        """Keys per split when the data set comes with its own split, else ``None`` (seeded split)."""

    def no_instance_hint(self) -> str:
        """What to check when no record holds an instance."""

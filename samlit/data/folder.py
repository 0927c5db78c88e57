"""Image / instance-label folders as a ``Source`` (``data=folder``)::

    <root>/images/<stem>.<png|jpg|jpeg|tif|tiff>   the image (grayscale, palette, 16-bit, RGBA: read as RGB)
    <root>/masks/<stem>.png                        its instance-label image: 0 = background, every other value one
                                                   instance (8- or 16-bit, or palette indices)

With ``instances="components"`` a mask is binary instead (any non-zero pixel is foreground) and each
8-connected component is one instance. An instance's box prompt is its mask's tight box.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from samlit.core.errors import SamlitError
from samlit.core.images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, read_rgb
from samlit.data.checks import BadFile, report_problems
from samlit.data.instances import (
    image_problem,
    instance_census,
    instance_sample,
    warn_orientation,
)
from samlit.data.sample import InstanceCensus, InstanceSample

INSTANCE_MODES = ("labels", "components")
LABEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I", "1")  # single-channel: values are labels


@dataclass(frozen=True)
class FolderRecord:
    """An image and its label image; ``key`` is the shared file stem."""

    key: str
    image: Path
    mask: Path


class FolderSource:
    """``Source`` over ``<root>/images`` + ``<root>/masks`` (see the module doc).

    Args:
        root: the folder. instances: ``labels`` (one value per instance) or ``components`` (binary masks).
        min_area: instances smaller than this many px are specks (counted, left out).
    """

    def __init__(self, *, root: str | Path | None, instances: str = "labels", min_area: int = 16) -> None:
        if root is None or not str(root).strip():
            raise SamlitError("data.root is not set: pass data.root=<folder with images/ and masks/>")
        if instances not in INSTANCE_MODES:
            raise SamlitError(f"data.instances={instances!r} must be one of {', '.join(INSTANCE_MODES)}")
        self.root = Path(root).expanduser()
        self.instances = instances
        self.min_area = min_area
        self.exif_oriented = 0

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    def prepare(self) -> None:
        """Nothing to make: the files are the user's."""

    def find(self) -> list[FolderRecord]:
        for folder in (self.root, self.images, self.masks):
            if not folder.is_dir():
                raise SamlitError(
                    f"data.root: {folder} {'does not exist' if not folder.exists() else 'is not a folder'}; expected "
                    "<root>/images/<stem>.<png|jpg|tif> and <root>/masks/<stem>.png (instance labels)"
                )
        images = [p for p in sorted(self.images.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise SamlitError(f"data.root: {self.images} holds no image (.png, .jpg, .jpeg, .tif, .tiff)")
        return [FolderRecord(key=p.stem, image=p, mask=self.masks / f"{p.stem}.png") for p in images]

    def stray(self, records: list[FolderRecord]) -> list[str]:
        used = {r.image for r in records} | {r.mask for r in records}
        stray = []
        for folder, why in ((self.images, "not an image"), (self.masks, "no image <stem>.<png|jpg|...> for it")):
            for path in sorted(folder.iterdir()):
                if path not in used:
                    stray.append(f"{path}: {'a folder' if path.is_dir() else why}")
        return stray

    def check(
        self, records: list[FolderRecord], *, on_bad_file: str, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[list[FolderRecord], list[BadFile]]:
        good, bad, seen = [], [], {}
        for record in records:
            problem = self._problem(record, seen, max_pixels=max_pixels)
            if problem:
                bad.append(BadFile(record.key, problem))
            else:
                good.append(record)
                seen[record.key] = record.image
        report_problems(bad, on_bad_file=on_bad_file)
        self.exif_oriented = warn_orientation(r.image for r in good)
        return good, bad

    def _problem(self, record: FolderRecord, seen: dict[str, Path], *, max_pixels: int) -> str | None:
        if record.key in seen:
            return f"{seen[record.key]} and {record.image} share the stem {record.key!r}: {record.image} left out"
        if not record.mask.is_file():
            return f"{record.mask} is missing: image {record.image} left out (every image needs its label image)"
        problem = image_problem(record.mask, expected=None, what=f"image {record.image}", max_pixels=max_pixels)
        if problem:
            return problem
        with Image.open(record.mask) as mask:
            mode, size = mask.mode, mask.size
        if mode not in LABEL_MODES:
            return (
                f"{record.mask} is a {mode} image, not a label image: save instance labels as one channel "
                "(8- or 16-bit grayscale or palette); image left out"
            )
        return image_problem(record.image, expected=size, what=f"its label image {record.mask}", max_pixels=max_pixels)

    def labels(self, record: FolderRecord) -> np.ndarray:
        """(H, W) int: 0 background, one value per instance (``components``: one per connected component)."""
        with Image.open(record.mask) as mask:
            values = np.asarray(mask).astype(np.int64)
        if self.instances == "components":
            values = cv2.connectedComponents((values != 0).astype(np.uint8), connectivity=8)[1]
        return values

    def instance_masks(self, record: FolderRecord) -> np.ndarray:
        labels = self.labels(record)
        ids = np.unique(labels)
        ids = ids[ids != 0]
        return labels[None] == ids[:, None, None]

    def depends_on(self, record: FolderRecord) -> tuple[list[Path], dict[str, Any]]:
        settings = {"source": "folder", "instances": self.instances, "min_area": self.min_area}
        return [record.image, record.mask], settings

    def census(self, record: FolderRecord) -> InstanceCensus:
        labels = self.labels(record)
        return instance_census([int(n) for n in np.bincount(labels.ravel())[1:] if n], min_area=self.min_area)

    def read(self, record: FolderRecord) -> InstanceSample:
        return instance_sample(record.key, read_rgb(record.image), self.instance_masks(record), min_area=self.min_area)

    def warn(self, census: Iterable[InstanceCensus]) -> None:
        pass  # the bad files are warned in check

    def counts(self, census: Iterable[InstanceCensus]) -> dict[str, Any]:
        return {"source": "folder", "instances": self.instances, "exif_oriented_images": self.exif_oriented}

    def user_splits(self) -> None:
        return None

    def no_instance_hint(self) -> str:
        mode = "instance values (0 = background)" if self.instances == "labels" else "non-zero foreground"
        return f"check that {self.masks}/<stem>.png holds {mode}"

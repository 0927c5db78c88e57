"""Image augmentation that keeps the store valid: a fixed number of seeded views per training image.

An embedding is cached per image pixels, so an image augmented afresh every step would never hit the cache.
Instead view ``v`` of scan ``key`` is the albumentations pipeline run with the seed ``hash(seed, key, v)``:
the same pixels every epoch, in every process, so its embedding is computed once. View 0 is the scan itself.
Each epoch draws one of the ``views + 1`` views per scan; the prepare stage makes and encodes all of them up front.
Image, instance masks and boxes go through the pipeline together; validation and test are never augmented.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import replace

import albumentations as A
import numpy as np

from samlit.core.errors import SamlitError
from samlit.core.seeds import stable_hash
from samlit.data.sample import InstanceSample


def view_seed(*, seed: int, key: str, view: int) -> int:
    """A 32-bit seed for (``seed``, scan ``key``, ``view``), the same on every machine and process."""
    return stable_hash(seed, key, view) & 0xFFFFFFFF


class ImageViews:
    """``views`` seeded augmented views per training scan (0 = no image augmentation).

    Args:
        views: augmented views per training scan, in addition to the scan itself.
        transforms: albumentations transforms applied in order (config: a list of ``_target_`` nodes).
        seed: the views' base seed (``${seed}``); another seed gives other views.
    """

    def __init__(self, *, views: int = 0, transforms: Sequence[A.BasicTransform] = (), seed: int = 0) -> None:
        if not isinstance(views, int) or views < 0:
            raise SamlitError(f"data.augment.views={views!r} must be a whole number >= 0 (0 = no augmentation)")
        self.views = views
        self.seed = seed
        self._identity: str | None = None
        with warnings.catch_warnings():  # a colour-only pipeline has no transform for the boxes: fine
            warnings.filterwarnings("ignore", message="Got processor for bboxes", category=UserWarning)
            self.pipeline = A.Compose(
                list(transforms),
                bbox_params=A.BboxParams(format="pascal_voc", label_fields=["stamp"], clip=True, min_area=1.0),
            )

    def identity(self) -> str:
        """What the views' pixels depend on: the pipeline (albumentations' own serialisation), its version and
        the seed. The store keys augmented items by it."""
        if self._identity is None:
            pipeline = json.dumps(A.to_dict(self.pipeline), sort_keys=True, default=str)
            self._identity = f"albumentations {A.__version__}; seed {self.seed}; {pipeline}"
        return self._identity

    def __call__(self, sample: InstanceSample, *, view: int) -> InstanceSample:
        """View ``view`` (0..views) of ``sample``: image (H', W', 3) uint8, masks (N', H', W') bool, boxes (N', 4).
        Stamps pushed out of the image are dropped (N' <= N)."""
        if view == 0 or not self.pipeline.transforms:
            return sample
        if not 0 < view <= self.views:
            raise IndexError(f"view {view} of {sample.key}: only views 0..{self.views} exist")
        self.pipeline.set_random_seed(view_seed(seed=self.seed, key=sample.key, view=view))
        targets = {"image": sample.image, "bboxes": sample.boxes.reshape(-1, 4), "stamp": np.arange(len(sample.boxes))}
        if len(sample.masks):  # albumentations cannot stack zero masks
            targets["masks"] = sample.masks.astype(np.uint8)
        out = self.pipeline(**targets)
        kept = np.asarray(out["stamp"], dtype=np.int64)
        height, width = out["image"].shape[:2]
        masks = np.asarray(out.get("masks", []), dtype=bool).reshape(-1, height, width)[kept]
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        return replace(sample, image=np.ascontiguousarray(out["image"]), masks=masks, boxes=boxes)

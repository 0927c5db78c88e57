"""Image embeddings are computed once per image per run: the encoder is frozen, so an embedding only depends
on the image. ``EmbeddingCache`` is the seam; today it keeps embeddings in memory for the run (a persistent,
fingerprinted on-disk cache plugs in behind the same ``get``)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class EmbeddingCache:
    """Key -> image embedding (1, 256, 64, 64), computed on first request."""

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Return the cached embedding for ``key``, calling ``compute()`` only the first time."""
        if key in self._store:
            self.hits += 1
        else:
            self.misses += 1
            self._store[key] = compute().detach()
        return self._store[key]

    def __len__(self) -> int:
        return len(self._store)

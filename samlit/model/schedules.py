"""Learning-rate schedules that torch has no one-liner for (the ``scheduler`` group; ``plateau`` is torch's own)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from samlit.core.errors import SamlitError


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, *, warmup_epochs: int = 1, max_epochs: int, min_lr_ratio: float = 0.01
) -> LambdaLR:
    """Per-epoch factor on the optimizer's lr: linear from ``1 / (warmup_epochs + 1)`` to 1 over ``warmup_epochs``,
    then a cosine from 1 down to ``min_lr_ratio`` at ``max_epochs``."""
    if max_epochs < 1 or not 0 <= warmup_epochs < max_epochs or not 0 <= min_lr_ratio <= 1:
        raise SamlitError(
            f"scheduler=cosine: need 0 <= scheduler.warmup_epochs ({warmup_epochs}) < trainer.max_epochs "
            f"({max_epochs}) and 0 <= scheduler.min_lr_ratio ({min_lr_ratio}) <= 1"
        )

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = min(1.0, (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs - 1))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, lr_lambda=factor)

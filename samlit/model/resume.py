"""What a resumed fit takes from its checkpoint and what from its config: a resumed run is what its config says.

A checkpoint records the optimizer and scheduler settings it was trained with (``optimizer_settings``). Resuming
with other optimizer keyword values (``optimizer.lr``, ``optimizer.weight_decay``, ...) applies them to the restored
optimizer (``apply_optimizer_changes``: its param groups, and a scheduler's base learning rates); another optimizer
class or other scheduler settings cannot be applied to a restored state and are refused in one line
(``optimizer_changes``). ``finite_checkpoint`` names the checkpoint a run that diverged can resume from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from samlit.core.errors import SamlitError

log = logging.getLogger(__name__)

SIMPLE = (int, float, str, bool, type(None))


def factory_settings(factory: Callable[..., Any] | None) -> dict[str, Any] | None:
    """A partial optimizer / scheduler (Hydra ``_partial_: true``) as plain values: ``target`` (the callable's
    dotted name) and its keyword arguments that are plain values or sequences of them (weights_only-loadable)."""
    if factory is None:
        return None
    func = getattr(factory, "func", factory)
    out: dict[str, Any] = {"target": f"{func.__module__}.{func.__qualname__}"}
    for key, value in sorted(getattr(factory, "keywords", {}).items()):
        if isinstance(value, SIMPLE):
            out[key] = value
        elif isinstance(value, Sequence) and all(isinstance(v, SIMPLE) for v in value):
            out[key] = list(value)
    return out


def optimizer_settings(
    optimizer: Callable[..., Any] | None, scheduler: Callable[..., Any] | None
) -> dict[str, dict[str, Any] | None]:
    """What a checkpoint records (``samlit_optimizer``): the optimizer's and the scheduler's ``factory_settings``."""
    return {"optimizer": factory_settings(optimizer), "scheduler": factory_settings(scheduler)}


def optimizer_changes(saved: dict[str, Any] | None, ours: dict[str, Any]) -> dict[str, Any]:
    """The optimizer keyword values this run sets otherwise than the checkpoint's run (``{}``: none, or a checkpoint
    from before these were recorded).

    Raises:
        SamlitError: another optimizer class, or other scheduler settings (one line naming the key and the fix).
    """
    if not saved:
        return {}
    fix = "resume with the checkpoint's settings (its run's config_resolved.yaml), or start a new run without ckpt_path"
    theirs_opt, ours_opt = saved.get("optimizer") or {}, ours.get("optimizer") or {}
    if theirs_opt.get("target") != ours_opt.get("target"):
        raise SamlitError(
            f"the checkpoint's optimizer is {theirs_opt.get('target')}, this run's {ours_opt.get('target')}: a resume "
            f"continues the checkpoint's optimizer state; {fix}"
        )
    if saved.get("scheduler") != ours.get("scheduler"):
        theirs_s, ours_s = saved.get("scheduler") or {"target": None}, ours.get("scheduler") or {"target": None}
        differing = [k for k in sorted({*theirs_s, *ours_s}) if theirs_s.get(k) != ours_s.get(k)]
        key = "target" if "target" in differing else differing[0]
        name = "scheduler" if key == "target" else f"scheduler.{key}"
        raise SamlitError(
            f"the checkpoint was trained with {name}={theirs_s.get(key)!r}, this run has {name}={ours_s.get(key)!r}: "
            f"a resume continues the checkpoint's schedule; {fix}"
        )
    return {k: v for k, v in ours_opt.items() if k != "target" and theirs_opt.get(k) != v}


def apply_optimizer_changes(optimizers: Sequence[Any], schedulers: Sequence[Any], changes: dict[str, Any]) -> None:
    """Set ``changes`` (``optimizer_changes``) on every param group of the restored ``optimizers`` (``lr`` also as
    ``initial_lr``, and as each scheduler's ``base_lrs``, from which a schedule computes its rates), and say so in
    one line."""
    if not changes:
        return
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for key, value in changes.items():
                if key in group:
                    group[key] = tuple(value) if isinstance(group[key], tuple) else value
            if "lr" in changes and "initial_lr" in group:
                group["initial_lr"] = changes["lr"]
    if "lr" in changes:
        for scheduler in schedulers:
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [changes["lr"]] * len(scheduler.base_lrs)
    said = ", ".join(f"optimizer.{k}={v}" for k, v in changes.items())
    log.info("resumed with %s: applied to the checkpoint's restored optimizer", said)


def finite_checkpoint(trainer: Any) -> Path | None:
    """The newest checkpoint of this fit written before its first non-finite loss: the every-epoch checkpoint (a
    ``ModelCheckpoint`` with no monitor and a plain file name, ``last.ckpt``), if it exists. A run stops at its first
    non-finite loss, so that file holds the end of an epoch whose losses were all finite."""
    for callback in getattr(trainer, "checkpoint_callbacks", []):
        name = getattr(callback, "filename", None)
        if callback.monitor is None and name and "{" not in name and callback.dirpath:
            path = Path(callback.dirpath) / f"{name}{callback.FILE_EXTENSION}"
            if path.is_file():
                return path
    return None

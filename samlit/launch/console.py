"""Console output of the entry points under Hydra: each message once, without known-harmless warnings."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's handlers only and drop warnings that are on purpose here."""
    # Frozen encoders stay in eval mode on purpose (see SamFineTuner.train); Lightning warns about it.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    # The prepare stage (samlit.run.prepare) is a predict loop that returns nothing, on purpose.
    warnings.filterwarnings("ignore", message=r"predict returned None", category=UserWarning)
    # torchdata's StatefulDataLoader (the training loader) calls a deprecated torch API at every epoch.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)
    # samlit sets average="micro" explicitly; torchmetrics warns about the future default whatever the argument.
    warnings.filterwarnings(
        "ignore", message=r"DiceScore metric currently defaults to `average=micro`", module=r"torchmetrics\."
    )
    # Lightning's own pytree helper builds torch's deprecated LeafSpec (nothing samlit calls or can change).
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", module=r"lightning\.pytorch\.utilities"
    )
    if logging.getLogger().handlers:  # Hydra's handlers (console + <job>.log) carry Lightning's messages too
        logging.getLogger("lightning").handlers.clear()
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:  # the console, not <job>.log
                handler.addFilter(lightning_info_to_log_only)


def lightning_info_to_log_only(record: logging.LogRecord) -> bool:
    """Console filter: Lightning's INFO lines (devices found, seed, checkpoint restores, why a fit stopped, tips)
    go to ``<job>.log`` only; its warnings and errors, and every samlit line, still reach the console."""
    return record.levelno >= logging.WARNING or not record.name.startswith("lightning")


def quiet_worker(rank: int) -> None:
    """DDP ranks > 0 print warnings and errors only (rank 0 tells the story); their ``<job>_rank<k>.log`` keeps all."""
    if rank == 0:
        return
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)

"""Console output of the entry points under Hydra: each message once, without known-harmless warnings."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's handlers only and drop warnings that are on purpose here."""
    # Frozen encoders stay in eval mode on purpose (see SamFineTuner.train); Lightning warns about it.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    # The embedding build (samlit.embed) is a predict loop that returns nothing, on purpose.
    warnings.filterwarnings("ignore", message=r"predict returned None", category=UserWarning)
    # torchdata's StatefulDataLoader (the training loader) calls a deprecated torch API at every epoch.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)
    if logging.getLogger().handlers:  # Hydra's handlers (console + <job>.log) carry Lightning's messages too
        logging.getLogger("lightning").handlers.clear()


def quiet_worker(rank: int) -> None:
    """DDP ranks > 0 print warnings and errors only (rank 0 tells the story); their ``<job>_rank<k>.log`` keeps all."""
    if rank == 0:
        return
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)

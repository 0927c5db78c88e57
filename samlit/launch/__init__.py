"""Hydra glue: entry-point wrapper, config resolvers, sweep summary, DDP workers, run-dir check, console."""

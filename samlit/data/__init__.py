"""Data: readers, the synthetic generator, prompts and the Lightning datamodule (no model code here)."""

"""The model side: SAM (registry, weights, download), the embedding cache, losses, metrics, the LightningModule."""

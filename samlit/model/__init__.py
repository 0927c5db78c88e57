"""The model side: SAM (registry, weights, download), the encoder fingerprint, losses, metrics, the LightningModule."""

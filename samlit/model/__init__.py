"""The model side: SAM (registry, weights, download), the encoder's fingerprint, losses, metrics, the LightningModule."""

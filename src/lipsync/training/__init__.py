"""Training: the LightningModule system, its callbacks and checkpoint I/O (Lightning lives only here)."""

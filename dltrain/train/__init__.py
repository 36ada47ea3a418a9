"""Training: losses, metrics, optimizers and schedulers, and the shared loop."""

"""Plain-words hints from the loss curves: overfitting and underfitting."""

from __future__ import annotations

import math

RISING_EPOCHS = 3  # validation loss above its best for this many epochs while training loss falls
RISE = 1.05  # and by at least this factor: noise is not overfitting
HIGH_SHARE = 0.8  # a loss above this share of the baseline has learned little


def diagnose(history: list[dict], baseline: float) -> str | None:
    """A hint when validation loss rose while training loss fell, or when both stayed high.

    `baseline` is the training loss of the best constant prediction (a model that learned nothing).
    """
    val = [r.get("val_loss", math.nan) for r in history]
    train = [r["train_loss"] for r in history]
    if not history:
        return None
    finite = [(v, i) for i, v in enumerate(val) if math.isfinite(v)]
    if finite:
        best_val, best = min(finite)
        last = len(history) - 1
        if last - best >= RISING_EPOCHS and val[last] > RISE * best_val and train[last] < train[best]:
            return (
                f"Overfitting: validation loss rose from {best_val:.4g} (epoch {best + 1}) to {val[last]:.4g} "
                f"(epoch {last + 1}) while training loss fell from {train[best]:.4g} to {train[last]:.4g}. "
                "The model is learning the training rows by heart: try train.early_stopping, Dropout, "
                "optimizer.weight_decay, a smaller model, or more data. best.pt holds the best epoch."
            )
    if math.isfinite(baseline) and baseline > 0:
        last_val = val[-1] if math.isfinite(val[-1]) else train[-1]
        if train[-1] > HIGH_SHARE * baseline and last_val > HIGH_SHARE * baseline:
            return (
                f"Underfitting: training and validation loss ({train[-1]:.4g}, {last_val:.4g}) stayed close to "
                f"{baseline:.4g}, the loss of always predicting the same answer. The model has learned little: try "
                "more epochs, a higher learning rate, a larger model, or inputs that say more about the target."
            )
    return None

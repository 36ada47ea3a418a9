"""Plain-words hints from the loss curves: overfitting, underfitting, and a model still learning
when training ended. A small validation split is noisy: what counts as a rise scales with it."""

from __future__ import annotations

import math

RISING_EPOCHS = 3  # validation loss above its best for this many epochs while training loss falls
RISE = 1.05  # and by at least this factor: noise is not overfitting
NOISE = 2.0  # ... or by this many standard errors of a mean over the validation rows (1 + NOISE / sqrt(rows))
HIGH_SHARE = 0.8  # a loss above this share of the baseline has learned little
STILL_FALLING = 0.99  # the last epoch's validation loss below this share of the one a few epochs before
STILL_EPOCHS = 10  # ... in a run of at least this many epochs (a short run was asked to be short)


def rise_needed(val_rows: int | None) -> float:
    """The factor over its best that validation loss must rise by to be more than the noise of a
    split of `val_rows` rows (a mean over 40 rows moves by a third from one epoch to the next)."""
    if not val_rows:
        return RISE
    return max(RISE, 1 + NOISE / math.sqrt(val_rows))


SMALL_SPLIT = 200  # a validation split of fewer rows scales early stopping's patience up, by sqrt(200 / rows)
MAX_SCALE = 3.0


def patience_for(patience: int, val_rows: int | None) -> int:
    """Early stopping's patience on a validation split of `val_rows` rows: as given from 200 rows
    on; below that, longer by sqrt(200 / rows) (at most 3 times), since the epoch-to-epoch noise of a
    mean loss grows as 1 / sqrt(rows) and a flat-looking curve on 40 rows hides a model still learning."""
    if not val_rows or val_rows >= SMALL_SPLIT:
        return patience
    return math.ceil(patience * min(MAX_SCALE, math.sqrt(SMALL_SPLIT / val_rows)))


def diagnose(history: list[dict], baseline: float, val_rows: int | None = None, stopped_early: bool = False) -> str | None:
    """A hint when validation loss rose while training loss fell, when both stayed high, or when
    the model was still improving at the last epoch.

    `baseline` is the training loss of the best constant prediction (a model that learned nothing);
    `val_rows` the size of the validation split, whose noise a rise must exceed.
    """
    if not history:
        return None
    val = [r.get("val_loss", math.nan) for r in history]
    train = [r["train_loss"] for r in history]
    finite = [(v, i) for i, v in enumerate(val) if math.isfinite(v)]
    last = len(history) - 1
    if finite:
        best_val, best = min(finite)
        rise = rise_needed(val_rows)
        if last - best >= RISING_EPOCHS and val[last] > rise * best_val and train[last] < train[best]:
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
    watched = val if finite else train
    back = 5
    if not stopped_early and len(history) >= STILL_EPOCHS and math.isfinite(watched[-1]) and math.isfinite(watched[-1 - back]):
        best_at = min(range(len(watched)), key=lambda i: watched[i] if math.isfinite(watched[i]) else math.inf)
        if best_at >= last - 1 and watched[-1] < STILL_FALLING * watched[-1 - back]:
            which = "validation" if finite else "training"
            return (
                f"Still learning: {which} loss fell from {watched[-1 - back]:.4g} to {watched[-1]:.4g} over the last "
                f"{back} epochs and was at its best at the end (epoch {best_at + 1} of {last + 1}). The model is "
                f"undertrained rather than too small: train longer (train.epochs={2 * (last + 1)}, or go on with "
                f"dltrain fit --resume RUN train.epochs={2 * (last + 1)})."
            )
    return None

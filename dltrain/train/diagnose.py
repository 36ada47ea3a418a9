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
MATERIAL = 0.05  # a rise of validation loss smaller than this share of the baseline loss is no hint's business


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


def diagnose(
    history: list[dict],
    baseline: float,
    val_rows: int | None = None,
    stopped_early: bool = False,
    early_stopping: bool = False,
) -> str | None:
    """A hint when validation loss rose while training loss fell, when both stayed high, or when
    the model was still improving at the last epoch.

    `baseline` is the training loss of the best constant prediction (a model that learned nothing);
    `val_rows` the size of the validation split, whose noise a rise must exceed. A run that early
    stopping ended gets no overfitting hint: the rise that stopped it is what it watches for, and
    best.pt holds the epoch before it. A rise that is small next to the baseline (a loss of 0.01
    doubling on a split classified right) is not called overfitting either.
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
        # one epoch's dip or jump is noise: the rise is read on a moving average of SMOOTH epochs
        smooth_val, smooth_best = _smoothed(val), _smoothed(val)[best] if len(val) else math.nan
        ended = smooth_val[last] if math.isfinite(smooth_val[last]) else val[last]
        lowest = min((v for v in smooth_val if math.isfinite(v)), default=best_val)
        material = not (math.isfinite(baseline) and baseline > 0) or val[last] - best_val > MATERIAL * baseline
        # a mean of SMOOTH epochs is steadier by sqrt(SMOOTH): so is the rise it must show
        smooth_rise = rise_needed(val_rows * SMOOTH) if val_rows else RISE
        rose = val[last] > rise * best_val and ended > smooth_rise * lowest and math.isfinite(smooth_best)
        if not stopped_early and material and rose and last - best >= RISING_EPOCHS and train[last] < train[best]:
            tries = "Dropout, optimizer.weight_decay" if early_stopping else "train.early_stopping, Dropout, optimizer.weight_decay"
            return (
                f"Overfitting: validation loss rose from {best_val:.4g} (epoch {best + 1}) to {val[last]:.4g} "
                f"(epoch {last + 1}) while training loss fell from {train[best]:.4g} to {train[last]:.4g}. "
                f"The model is learning the training rows by heart: try {tries}, a smaller model, or more data. "
                "best.pt holds the best epoch."
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
        fell = watched[-1 - back] - watched[-1]
        material = not (math.isfinite(baseline) and baseline > 0) or fell > MATERIAL * baseline
        if material and best_at >= last - 1 and watched[-1] < STILL_FALLING * watched[-1 - back]:
            which = "validation" if finite else "training"
            return (
                f"Still learning: {which} loss fell from {watched[-1 - back]:.4g} to {watched[-1]:.4g} over the last "
                f"{back} epochs and was at its best at the end (epoch {best_at + 1} of {last + 1}). The model is "
                f"undertrained rather than too small: train longer (train.epochs={2 * (last + 1)}, or go on with "
                f"dltrain fit --resume RUN train.epochs={2 * (last + 1)})."
            )
    return None


SMOOTH = 3


def _smoothed(values: list[float]) -> list[float]:
    """The mean of each epoch's value and the SMOOTH - 1 before it (fewer at the start)."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - SMOOTH + 1) : i + 1] if math.isfinite(v)]
        out.append(sum(window) / len(window) if window else math.nan)
    return out

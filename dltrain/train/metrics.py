"""The metric registry: accuracy, balanced_accuracy, precision, recall, f1, macro_f1, auc for
classes; mae, rmse, r2 for numbers.

Metrics are computed once per epoch from every prediction of the split (gathered from all
processes under DDP), so they are exact, not averages of batch averages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from dltrain.components import Registry
from dltrain.console import warn
from dltrain.task import BINARY, CATEGORY, NUMERIC, Task


@dataclass
class Outcome:
    """A split's predictions, as the metrics read them."""

    task: Task
    output: torch.Tensor  # the model's raw output, (N, outputs)
    target: torch.Tensor  # the encoded target
    split: str = "val"

    def probabilities(self) -> torch.Tensor:
        return self.task.probabilities(self.output)

    def labels(self) -> torch.Tensor:
        return self.task.labels(self.target)

    @cached_property
    def confusion_matrix(self) -> torch.Tensor:
        """Rows true, columns predicted; computed once for all the metrics that read it."""
        k = len(self.task.classes)
        predicted = self.task.predicted(self.output)
        return torch.bincount(self.labels() * k + predicted, minlength=k * k).reshape(k, k)

    def confusion(self) -> torch.Tensor:
        return self.confusion_matrix


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[Outcome], float]
    higher_is_better: bool
    types: tuple[str, ...]  # target types it applies to


def _accuracy(o: Outcome) -> float:
    matrix = o.confusion()
    return float(matrix.diagonal().sum().double() / matrix.sum().clamp_min(1))


def _class_counts(o: Outcome, metric: str) -> tuple[torch.Tensor, ...] | None:
    """(true positives, predicted, actual) per class (binary: the positive class only).

    None, with a warning, when a class is absent from the split: the metric is undefined there.
    """
    matrix = o.confusion().double()
    counts = matrix.diagonal(), matrix.sum(0), matrix.sum(1)
    if o.task.target_type == BINARY:
        counts = tuple(c[1:] for c in counts)
        absent = [o.task.classes[1]] if counts[2].sum() == 0 else []
    else:
        absent = [c for c, n in zip(o.task.classes, counts[2].tolist()) if n == 0]
    if absent:
        warn(f"{metric} is undefined on the {o.split} split: no rows of class {', '.join(map(repr, absent))}")
        return None
    return counts


def _precision_recall(o: Outcome, metric: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    counts = _class_counts(o, metric)
    if counts is None:
        return None
    tp, predicted, actual = counts
    # a class never predicted has precision 0, as scikit-learn counts it
    return torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp)), tp / actual


def _precision(o: Outcome) -> float:
    rates = _precision_recall(o, "precision")
    return math.nan if rates is None else float(rates[0].mean())


def _recall(o: Outcome) -> float:
    rates = _precision_recall(o, "recall")
    return math.nan if rates is None else float(rates[1].mean())


def _f1(o: Outcome) -> float:
    rates = _precision_recall(o, "f1")
    if rates is None:
        return math.nan
    precision, recall = rates
    both = precision + recall
    return float(torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), 0.0).mean())


def _every_class(o: Outcome, metric: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(precision, recall) of every class, the negative class of a binary target too; None, with a
    warning, when a class is absent from the split."""
    matrix = o.confusion().double()
    tp, predicted, actual = matrix.diagonal(), matrix.sum(0), matrix.sum(1)
    absent = [c for c, n in zip(o.task.classes, actual.tolist()) if n == 0]
    if absent:
        warn(f"{metric} is undefined on the {o.split} split: no rows of class {', '.join(map(repr, absent))}")
        return None
    return torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp)), tp / actual


def _balanced_accuracy(o: Outcome) -> float:
    """The mean of each class's recall (scikit-learn's balanced_accuracy_score): a model that
    always predicts the majority class scores 1 / classes, whatever the imbalance."""
    rates = _every_class(o, "balanced_accuracy")
    return math.nan if rates is None else float(rates[1].mean())


def _macro_f1(o: Outcome) -> float:
    """The mean of every class's F1, a binary target's negative class included (f1 of a binary
    target is the positive class's alone)."""
    rates = _every_class(o, "macro_f1")
    if rates is None:
        return math.nan
    precision, recall = rates
    both = precision + recall
    return float(torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), 0.0).mean())


def _auc(o: Outcome) -> float:
    """Area under the ROC curve: the chance a positive row scores above a negative one (ties half)."""
    score = o.probabilities()[:, 1].double()
    positive = o.labels() == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        warn(f"auc is undefined on the {o.split} split: it has rows of one class only")
        return math.nan
    order = score.argsort()
    _, inverse, counts = torch.unique_consecutive(score[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(score)
    ranks[order] = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _errors(o: Outcome) -> tuple[torch.Tensor, torch.Tensor]:
    return o.task.values(o.output), o.task.values(o.target)


def _mae(o: Outcome) -> float:
    predicted, actual = _errors(o)
    return float((predicted - actual).abs().mean())


def _rmse(o: Outcome) -> float:
    predicted, actual = _errors(o)
    return float((predicted - actual).pow(2).mean().sqrt())


def _r2(o: Outcome) -> float:
    predicted, actual = _errors(o)
    total = (actual - actual.mean()).pow(2).sum()
    if actual.numel() < 2 or float(total) == 0.0:
        warn(f"r2 is undefined on the {o.split} split: its target does not vary")
        return math.nan
    return float(1 - (predicted - actual).pow(2).sum() / total)


_CLASSES = (CATEGORY, BINARY)

METRICS: Registry[Metric] = Registry(
    "metric",
    {
        m.name: m
        for m in [
            Metric("accuracy", _accuracy, True, _CLASSES),
            Metric("balanced_accuracy", _balanced_accuracy, True, _CLASSES),
            Metric("precision", _precision, True, _CLASSES),
            Metric("recall", _recall, True, _CLASSES),
            Metric("f1", _f1, True, _CLASSES),
            Metric("macro_f1", _macro_f1, True, _CLASSES),
            Metric("auc", _auc, True, (BINARY,)),
            Metric("mae", _mae, False, (NUMERIC,)),
            Metric("rmse", _rmse, False, (NUMERIC,)),
            Metric("r2", _r2, True, (NUMERIC,)),
        ]
    },
)

DEFAULTS = {
    CATEGORY: ("accuracy", "balanced_accuracy", "precision", "recall", "f1"),  # f1 of classes is macro already
    BINARY: ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "macro_f1", "auc"),
    NUMERIC: ("mae", "rmse", "r2"),
}

# what `evaluate` reports beside a run's own metrics for classes (runs that chose theirs, runs of
# dltrain before these): the figures that say whether the rare classes are found at all
EVALUATED = {CATEGORY: ("balanced_accuracy", "macro_f1"), BINARY: ("balanced_accuracy", "macro_f1"), NUMERIC: ()}


def best_f1_threshold(task: Task, output: torch.Tensor, target: torch.Tensor) -> float:
    """The positive class's probability above which rows are called positive that gives the
    highest F1 of the positive class on these outputs (the middle of the gap between the last row
    called positive and the next). 0.5 when there is no positive row to find."""
    p = task.probabilities(output)[:, 1].double()
    positive = task.labels(target).to(p.device) == 1
    total = int(positive.sum())
    if total == 0 or p.numel() == 0:
        return 0.5
    ordered, order = p.sort(descending=True)
    found = positive[order].double().cumsum(0)
    called = torch.arange(1, p.numel() + 1, dtype=torch.double, device=p.device)
    f1 = 2 * found / (called + total)
    # a cut between equal probabilities cannot be made: only after the last of each run of ties
    cut = torch.ones_like(positive)
    cut[:-1] = ordered[:-1] > ordered[1:]
    best = int(torch.where(cut, f1, torch.full_like(f1, -1.0)).argmax())
    below = float(ordered[best + 1]) if best + 1 < p.numel() else 0.0
    return min(max((float(ordered[best]) + below) / 2, 1e-6), 1 - 1e-6)


def higher_is_better(name: str) -> bool:
    """Direction of `loss` or a metric name, with or without its split prefix."""
    bare = name.split("_", 1)[1] if name.startswith(("val_", "train_")) else name
    return False if bare == "loss" else METRICS.get(bare).higher_is_better


def compute(names: tuple[str, ...], outcome: Outcome) -> dict[str, float]:
    return {name: METRICS.get(name).compute(outcome) for name in names}

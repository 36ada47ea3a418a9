"""The loss registry. A loss decides how the target is encoded and what the model's output means."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from dltrain.components import Component, ComponentError, Registry, Signature, construct
from dltrain.task import INDEX, STANDARDIZED, ZERO_ONE


@dataclass(frozen=True)
class LossEntry:
    name: str
    factory: Callable[..., nn.Module]
    form: str  # the target tensor it takes: INDEX, ZERO_ONE or STANDARDIZED (dltrain.task)
    output: str  # what the model's last layer must give: logits, log_probs, probs or values
    balanced: str | None = None  # the argument that takes `balanced`: class weights from the training split's counts

    @property
    def signature(self) -> Signature:
        return Signature.of(self.factory)

    def expected_last_layer(self) -> str:
        return {"log_probs": "LogSoftmax", "probs": "Sigmoid"}.get(self.output, "")

    def build(self, component: Component) -> nn.Module:
        return construct(component, self.factory, self.signature)


_LOSSES = [
    ("CrossEntropyLoss", INDEX, "logits", "weight"),
    ("NLLLoss", INDEX, "log_probs", "weight"),
    ("BCEWithLogitsLoss", ZERO_ONE, "logits", "pos_weight"),
    ("BCELoss", ZERO_ONE, "probs", None),  # its weight is per element, not per class
    ("MSELoss", STANDARDIZED, "values", None),
    ("L1Loss", STANDARDIZED, "values", None),
    ("HuberLoss", STANDARDIZED, "values", None),
    ("SmoothL1Loss", STANDARDIZED, "values", None),
]

BALANCED = "balanced"

ALIASES = {
    "mse": "MSELoss",
    "mae": "L1Loss",
    "l1": "L1Loss",
    "huber": "HuberLoss",
    "bce": "BCEWithLogitsLoss",
    "binary_cross_entropy": "BCEWithLogitsLoss",
    "cross_entropy": "CrossEntropyLoss",
    "categorical_cross_entropy": "CrossEntropyLoss",
    "nll": "NLLLoss",
    "log_loss": "NLLLoss",
}


@cache
def loss_registry() -> Registry[LossEntry]:
    entries = {name: LossEntry(name, getattr(nn, name), form, output, balanced) for name, form, output, balanced in _LOSSES}
    return Registry("loss", entries, ALIASES)


def check_balanced(entry: LossEntry, component: Component) -> Component:
    """`balanced` where the loss takes class weights; the component with it left out, to bind the rest.

    Raises ComponentError naming the argument and what it takes."""
    known = {p.name for p in entry.signature.params}
    given = {k: v for k, v in component.kwargs.items() if isinstance(v, str) and k in ("weight", "pos_weight") and k in known}
    for key, value in given.items():
        if key != entry.balanced:
            takes = f"{entry.name} takes {entry.balanced}: balanced" if entry.balanced else f"{entry.name} takes no class weights to balance"
            raise ComponentError(f"{entry.name}: argument '{key}' takes a list of numbers, found {value!r}; {takes}", component.path)
        if value != BALANCED:
            raise ComponentError(
                f"{entry.name}: argument '{key}' takes a list of numbers, one per class, or balanced (from the "
                f"training split's class counts), found {value!r}",
                component.path,
            )
    kwargs = {k: v for k, v in component.kwargs.items() if k not in given}
    return Component(component.name, component.args, kwargs, component.path)


def is_balanced(entry: LossEntry, component: Component) -> bool:
    return entry.balanced is not None and component.kwargs.get(entry.balanced) == BALANCED


def balanced_weights(target: torch.Tensor, classes: int) -> list[float]:
    """n_samples / (classes * count) per class (scikit-learn's class_weight='balanced') of the
    training split's targets; a class with no training row gets the weight of one row."""
    counts = torch.bincount(target.reshape(-1).long().cpu(), minlength=classes).double().clamp_min(1)
    return [round(float(w), 6) for w in counts.sum() / (classes * counts)]


def resolve_balanced(entry: LossEntry, component: Component, target: torch.Tensor, classes: int) -> Component:
    """The loss with `balanced` replaced by the weights of the training split's targets, as plain
    floats: what the checkpoints keep, so that evaluate and --resume rebuild the same loss.

    CrossEntropyLoss/NLLLoss weight: one weight per class. BCEWithLogitsLoss pos_weight: the ratio of
    the positive class's balanced weight to the negative's, negatives / positives (pos_weight scales
    the positive rows' term alone)."""
    if not is_balanced(entry, component):
        return component
    weights = balanced_weights(target, 2 if entry.form == ZERO_ONE else classes)
    value = [round(weights[1] / weights[0], 6)] if entry.form == ZERO_ONE else weights
    return Component(component.name, component.args, {**component.kwargs, entry.balanced: value}, component.path)


def baseline_loss(entry: LossEntry, loss_fn: nn.Module, target: torch.Tensor, classes: int) -> float:
    """The loss of the best constant prediction on `target`: what a model that learned nothing reaches.

    The summary compares training and validation loss with it to tell underfitting.
    """
    n = target.shape[0]
    if n == 0:
        return math.nan
    with torch.no_grad():
        if entry.form == INDEX:
            prior = torch.bincount(target, minlength=classes).float().clamp_min(1e-6) / n
            log_prior = prior.log().expand(n, classes)
            output = {"logits": log_prior, "log_probs": log_prior.log_softmax(1)}.get(entry.output, prior)
        elif entry.form == ZERO_ONE:
            rate = target.float().mean().clamp(1e-6, 1 - 1e-6)
            value = torch.log(rate / (1 - rate)) if entry.output == "logits" else rate
            output = value.expand(n, 1)
        else:
            centre = target.median() if entry.name in ("L1Loss",) else target.mean()
            output = centre.expand(n, 1)
        return float(loss_fn(output, target))

"""The loss registry. A loss decides how the target is encoded and what the model's output means."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from dltrain.components import Component, Registry, Signature, construct
from dltrain.task import INDEX, STANDARDIZED, ZERO_ONE


@dataclass(frozen=True)
class LossEntry:
    name: str
    factory: Callable[..., nn.Module]
    form: str  # the target tensor it takes: INDEX, ZERO_ONE or STANDARDIZED (dltrain.task)
    output: str  # what the model's last layer must give: logits, log_probs, probs or values

    @property
    def signature(self) -> Signature:
        return Signature.of(self.factory)

    def expected_last_layer(self) -> str:
        return {"log_probs": "LogSoftmax", "probs": "Sigmoid"}.get(self.output, "")

    def build(self, component: Component) -> nn.Module:
        return construct(component, self.factory, self.signature)


_LOSSES = [
    ("CrossEntropyLoss", INDEX, "logits"),
    ("NLLLoss", INDEX, "log_probs"),
    ("BCEWithLogitsLoss", ZERO_ONE, "logits"),
    ("BCELoss", ZERO_ONE, "probs"),
    ("MSELoss", STANDARDIZED, "values"),
    ("L1Loss", STANDARDIZED, "values"),
    ("HuberLoss", STANDARDIZED, "values"),
    ("SmoothL1Loss", STANDARDIZED, "values"),
]

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
    entries = {name: LossEntry(name, getattr(nn, name), form, output) for name, form, output in _LOSSES}
    return Registry("loss", entries, ALIASES)


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

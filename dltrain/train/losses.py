"""The loss registry. A loss decides how the target is encoded and what the model's output means."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from dltrain.components import Registry, Signature

CLASSIFICATION = "classification"  # a class index per row, one output per class
BINARY = "binary"  # a 0/1 float per row, one output
REGRESSION = "regression"  # a standardized float per row, one output


@dataclass(frozen=True)
class LossEntry:
    name: str
    factory: Callable[..., nn.Module]
    task: str
    output: str  # what the model's last layer must give: logits, log_probs, probs or values

    @property
    def signature(self) -> Signature:
        return Signature.of(self.factory)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """The model's output as probabilities (classification: per class; binary: of the positive)."""
        if self.output == "logits":
            return output.softmax(1) if self.task == CLASSIFICATION else output.sigmoid()
        if self.output == "log_probs":
            return output.exp()
        return output

    def expected_last_layer(self) -> str:
        return {"log_probs": "LogSoftmax", "probs": "Sigmoid"}.get(self.output, "")


_LOSSES = [
    ("CrossEntropyLoss", CLASSIFICATION, "logits"),
    ("NLLLoss", CLASSIFICATION, "log_probs"),
    ("BCEWithLogitsLoss", BINARY, "logits"),
    ("BCELoss", BINARY, "probs"),
    ("MSELoss", REGRESSION, "values"),
    ("L1Loss", REGRESSION, "values"),
    ("HuberLoss", REGRESSION, "values"),
    ("SmoothL1Loss", REGRESSION, "values"),
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
    entries = {name: LossEntry(name, getattr(nn, name), task, output) for name, task, output in _LOSSES}
    return Registry("loss", entries, ALIASES)


def baseline_loss(entry: LossEntry, loss_fn: nn.Module, target: torch.Tensor, classes: int) -> float:
    """The loss of the best constant prediction on `target`: what a model that learned nothing reaches.

    The summary compares training and validation loss with it to tell underfitting.
    """
    n = target.shape[0]
    if n == 0:
        return math.nan
    with torch.no_grad():
        if entry.task == CLASSIFICATION:
            prior = torch.bincount(target, minlength=classes).float().clamp_min(1e-6) / n
            log_prior = prior.log().expand(n, classes)
            output = {"logits": log_prior, "log_probs": log_prior.log_softmax(1)}.get(entry.output, prior)
        elif entry.task == BINARY:
            rate = target.float().mean().clamp(1e-6, 1 - 1e-6)
            value = torch.log(rate / (1 - rate)) if entry.output == "logits" else rate
            output = value.expand(n, 1)
        else:
            centre = target.median() if entry.name in ("L1Loss",) else target.mean()
            output = centre.expand(n, 1)
        return float(loss_fn(output, target))

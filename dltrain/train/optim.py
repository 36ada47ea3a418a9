"""The optimizer and scheduler registries: `torch.optim` and `torch.optim.lr_scheduler` by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch

from dltrain.components import Component, Registry, Signature, bind, construct


@dataclass(frozen=True)
class OptimEntry:
    name: str
    factory: Callable
    inferred: tuple[str, ...]  # passed by dltrain: the parameters, or the optimizer
    fill: dict[str, str] = field(default_factory=dict)  # filled when absent: argument -> "total"

    @property
    def signature(self) -> Signature:
        return Signature.of(self.factory)


OPTIMIZER_ALIASES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


@cache
def optimizer_registry() -> Registry[OptimEntry]:
    entries = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            entries[name] = OptimEntry(name, obj, ("params",))
    return Registry("optimizer", entries, OPTIMIZER_ALIASES)


# Schedulers that need Python callables or other schedulers: not expressible in a config.
_NOT_CONFIGURABLE = {"LRScheduler", "_LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"}

# The length of the schedule, filled with the number of epochs (or steps) when not given.
_FILL = {
    "OneCycleLR": {"total_steps": "total"},
    "CosineAnnealingLR": {"T_max": "total"},
    "PolynomialLR": {"total_iters": "total"},
}


@cache
def scheduler_registry() -> Registry[OptimEntry]:
    schedulers = torch.optim.lr_scheduler
    entries = {}
    for name in dir(schedulers):
        obj = getattr(schedulers, name)
        if (
            isinstance(obj, type)
            and (issubclass(obj, schedulers.LRScheduler) or issubclass(obj, schedulers.ReduceLROnPlateau))
            and name not in _NOT_CONFIGURABLE
        ):
            entries[name] = OptimEntry(name, obj, ("optimizer",), _FILL.get(name, {}))
    return Registry("scheduler", entries)


SCHEDULER_INTERVALS = ("epoch", "step")


def scheduler_component(component: Component) -> tuple[Component, str]:
    """Split the dltrain-only key `interval` off a scheduler component."""
    kwargs = dict(component.kwargs)
    interval = kwargs.pop("interval", "epoch")
    return Component(component.name, component.args, kwargs, component.path), interval


def check_optimizer(component: Component) -> None:
    entry = optimizer_registry().get(component.name)
    bind(component, entry.signature, entry.inferred)


def check_scheduler(component: Component) -> None:
    entry = scheduler_registry().get(component.name)
    bind(component, entry.signature, entry.inferred, tuple(entry.fill))


def build_optimizer(component: Component, parameters) -> torch.optim.Optimizer:
    entry = optimizer_registry().get(component.name)
    return construct(component, entry.factory, entry.signature, (parameters,), entry.inferred)


def build_scheduler(component: Component, optimizer: torch.optim.Optimizer, total: int, mode: str):
    """`total` is the schedule's length in its interval (epochs, or optimizer steps); `mode` the
    monitored value's direction, for ReduceLROnPlateau."""
    entry = scheduler_registry().get(component.name)
    filled = {key: total for key in entry.fill}
    # OneCycleLR takes total_steps, or epochs with steps_per_epoch: fill only when neither is given
    if entry.name == "OneCycleLR" and "epochs" in component.kwargs:
        filled = {}
    if entry.name == "ReduceLROnPlateau":
        filled["mode"] = mode
    return construct(component, entry.factory, entry.signature, (optimizer,), entry.inferred, filled)

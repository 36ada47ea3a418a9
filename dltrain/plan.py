"""config -> a validated plan: every check a config needs beyond its own shape, in one place.

`make_plan` checks what needs the registries (layer, loss, optimizer, scheduler and metric names
and arguments, column types and options) and the file system (the data sources), and reports
those problems together with the config's own, each with its file:line. The plan holds the parsed
components and the data section as plain values for the steps after it.

Two checks need the data or the built parts, and run when they exist: `metric_names` and
`check_monitor` once the target's type and the splits are known, and `rehearse`, one training
step on the built parts, undone, so that what only fails when it runs fails before a run
directory is made, with the key to change.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dltrain.components import Component, ComponentError, bind, parse_component, suggest
from dltrain.config import LoadedConfig, read_config
from dltrain.config.schema import DEFAULT_OPTIMIZER, ByColumn, Files, Ratios
from dltrain.console import warn
from dltrain.data.batches import TensorSplit
from dltrain.data.encoders import check_column_options
from dltrain.data.prepare import Column, DataSpec
from dltrain.data.sources import FOLDER_TYPES, ResolvedSource, resolve_source
from dltrain.errors import ConfigError, DltrainError, Problem, first_line
from dltrain.model.builder import LayerErrors, parse_layers
from dltrain.train.losses import LossEntry, loss_registry
from dltrain.train.metrics import DEFAULTS, METRICS
from dltrain.train.optim import SCHEDULER_INTERVALS, check_optimizer, check_scheduler, scheduler_component

if TYPE_CHECKING:
    from dltrain.build import Parts


@dataclass
class Plan:
    """A config that passed every check that needs no data, with its parts parsed."""

    cfg: LoadedConfig  # the config, to cite its lines in later errors and to save it as run
    data: DataSpec
    layers: list[Component]
    loss: Component  # its canonical name
    loss_entry: LossEntry
    optimizer: Component
    scheduler: Component | None
    scheduler_interval: str  # epoch or step

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def train(self):
        return self.cfg.config.train

    @property
    def batch_size(self) -> int:
        return self.cfg.config.data.batch_size

    @property
    def seed(self) -> int:
        return self.cfg.config.seed

    def error(self, path: tuple, message: str) -> ConfigError:
        return self.cfg.error(path, message)

    @contextmanager
    def located(self):
        """Errors that name a config key become config errors citing its file and line."""
        try:
            yield
        except ConfigError:
            raise
        except ComponentError as error:
            raise self.error(error.path, str(error)) from None
        except DltrainError as error:
            if error.key:
                raise self.error(error.key, str(error)) from None
            raise


def make_plan(config: str | Path | dict, overrides: list[str] | tuple[str, ...] = (), origin: str | None = None) -> Plan:
    """Read and check a config (a YAML path or a dict); raise one ConfigError with every problem."""
    cfg = read_config(config, list(overrides), origin)
    problems = list(cfg.problems)
    found = _Components(cfg, problems)
    layers = found.layers()
    loss = found.one("loss", _check_loss) if "loss" in cfg.raw else None
    optimizer = found.one("optimizer", _check_optimizer, DEFAULT_OPTIMIZER)
    scheduler, interval = found.scheduler()
    data = None
    if cfg.config is not None:  # the shape is right: the values can be checked against the registries
        data = _data_spec(cfg, problems)
        problems += _metric_problems(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return Plan(cfg, data, layers, loss, loss_registry().get(loss.name), optimizer, scheduler, interval)


class _Components:
    """Layers, loss, optimizer and scheduler parsed and checked against their registries and constructors."""

    def __init__(self, cfg: LoadedConfig, problems: list[Problem]):
        self.cfg, self.problems = cfg, problems

    def layers(self) -> list[Component]:
        model = self.cfg.raw.get("model")
        layers = model.get("layers") if isinstance(model, dict) else None
        if not isinstance(layers, list) or not layers:
            return []  # the config's own check says what is missing
        try:
            return parse_layers(layers)
        except LayerErrors as error:
            self.problems += [self.cfg.problem(e.path, str(e)) for e in error.errors]
            return []

    def one(self, key: str, check: Callable[[Component], Component], default: Any = None) -> Component | None:
        value = self.cfg.raw.get(key, default)
        if value is None:
            return None
        try:
            return check(parse_component(value, (key,), key))
        except ComponentError as error:
            self.problems.append(self.cfg.problem((key,), str(error)))
            return None

    def scheduler(self) -> tuple[Component | None, str]:
        intervals = []

        def check(component: Component) -> Component:
            component, interval = scheduler_component(component)
            if interval not in SCHEDULER_INTERVALS:
                raise ComponentError(f"interval must be epoch or step, found {interval!r}")
            if component.name == "ReduceLROnPlateau" and interval == "step":
                raise ComponentError("ReduceLROnPlateau watches the monitored value once per epoch: use interval: epoch")
            check_scheduler(component)
            intervals.append(interval)
            return component

        scheduler = self.one("scheduler", check)
        return scheduler, (intervals[0] if intervals else "epoch")


def _check_loss(component: Component) -> Component:
    entry = loss_registry().get(component.name)
    bind(component, entry.signature)
    return Component(entry.name, component.args, component.kwargs, component.path)


def _check_optimizer(component: Component) -> Component:
    check_optimizer(component)
    return component


def _data_spec(cfg: LoadedConfig, problems: list[Problem]) -> DataSpec | None:
    """The data section as plain values: sources resolved (they must exist), columns as written."""
    data = cfg.config.data
    sources: dict[str, ResolvedSource] = {}
    if isinstance(data.split, Files):
        for name in ("train", "val", "test"):
            if getattr(data.split, name) is not None:
                sources[name] = _source(cfg, getattr(data.split, name), ("data", "split", name), problems)
    elif data.source is not None:
        sources[""] = _source(cfg, data.source, ("data", "source"), problems)
    inputs = None if data.inputs is None else [_column(c) for c in data.inputs]
    target = _column(data.target) if data.target is not None else None
    for index, column in enumerate([*(inputs or []), target]):
        if column is not None and (message := check_column_options(column.type, column.options)):
            path = ("data", "inputs", index) if inputs and index < len(inputs) else ("data", "target")
            problems.append(cfg.problem(path, message))
    first = next(iter(sources.values()), None)
    if target is None and first is not None and first.type in FOLDER_TYPES:
        target = Column("label")  # a folder of class subfolders: the class folder of each file
    elif target is None and (first is not None or not sources):
        problems.append(cfg.problem(("data", "target"), "required key is missing: the column to predict"))
    if target is None or None in sources.values():
        return None
    return DataSpec(
        sources=sources,
        target=target,
        inputs=inputs,
        id=data.id,
        ratios=data.split.model_dump() if isinstance(data.split, Ratios) else None,
        split_column=data.split.column if isinstance(data.split, ByColumn) else None,
        seed=cfg.config.seed,
        in_memory=data.in_memory,
        cache=data.cache,
        on_error=data.on_error,
    )


def _source(cfg: LoadedConfig, source, path: tuple, problems: list[Problem]) -> ResolvedSource | None:
    try:
        return resolve_source(source, lambda value, key: cfg.resolve_path(value, (*path, *key)))
    except ConfigError as error:
        problems += error.problems
    except ValueError as error:
        problems.append(cfg.problem(path, str(error)))
    return None


def _column(column) -> Column:
    if isinstance(column, str):
        return Column(column)
    return Column(column.column, column.type, dict(column.model_extra or {}))


def _metric_problems(cfg: LoadedConfig) -> list[Problem]:
    train, problems = cfg.config.train, []
    named = [("metrics", m) for m in train.metrics or []]
    if train.monitor.startswith(("val_", "train_")):
        named.append(("monitor", train.monitor.split("_", 1)[1]))
    for key, name in named:
        if name != "loss" and name not in METRICS.entries:
            hint = suggest(name, METRICS.names()) or f" Known metrics: {', '.join(METRICS.names())}."
            problems.append(cfg.problem(("train", key), f"unknown metric '{name}'.{hint}"))
    return problems


# ----- the checks that need the data


def metric_names(plan: Plan, target_type: str) -> tuple[str, ...]:
    """The metrics of each epoch: the config's, or the target type's defaults; the monitor's among them."""
    train = plan.train
    names = tuple(train.metrics) if train.metrics is not None else DEFAULTS[target_type]
    for name in names:
        if target_type not in METRICS.get(name).types:
            raise plan.error(("train", "metrics"), f"metric '{name}' does not apply to a {target_type} target; these do: {', '.join(DEFAULTS[target_type])}")
    monitor = train.monitor.split("_", 1)[1]
    if monitor != "loss" and monitor not in names:
        if target_type not in METRICS.get(monitor).types:
            raise plan.error(("train", "monitor"), f"monitor '{train.monitor}' does not apply to a {target_type} target; use val_loss or one of val_{', val_'.join(DEFAULTS[target_type])}")
        names = (*names, monitor)
    return names


def check_monitor(plan: Plan, splits: dict) -> None:
    monitor = plan.train.monitor
    if monitor.startswith("val_") and "val" not in splits:
        raise plan.error(("train", "monitor"), f"{monitor} needs a validation split, and this data has no val rows: monitor train_{monitor[4:]}, or give data.split a val part")


def warn_last_layer(layers: list[Component], loss: LossEntry) -> None:
    """A Softmax or Sigmoid before a loss that applies it itself trains badly: say how to fix it."""
    last = layers[-1].name if layers else ""
    expected = loss.expected_last_layer()
    if loss.output == "logits" and last in ("Softmax", "LogSoftmax", "Sigmoid"):
        applies = "softmax" if loss.name == "CrossEntropyLoss" else "the sigmoid"
        warn(
            f"the last layer is {last}, but {loss.name} applies {applies} itself and expects raw scores "
            f"(logits): remove the {last} layer. Predictions still come out as probabilities."
        )
    elif expected and last != expected:
        warn(f"{loss.name} expects the model to end with {expected}, but its last layer is {last or 'none'}: add {expected}" + (" (dim: 1)" if expected == "LogSoftmax" else "") + " as the last layer")


# ----- the rehearsal


def rehearse(plan: Plan, parts: Parts) -> None:
    """One training step on the built parts, undone, before anything is written.

    Every part of the config that only fails when it runs (a loss weight of the wrong length,
    `reduction: none`, an optimizer that needs a closure, BatchNorm on batches of one, an
    augmentation's bad argument, a scheduler's argument of the wrong type, a rate that breaks the
    weights) fails here with the key to change, instead of as a traceback in epoch 1. The weights,
    the optimizer's and the scheduler's states and the random numbers are as they were after it.
    """
    train = parts.data.splits["train"]
    if not isinstance(train, TensorSplit):  # streamed: the first batch is read by the trainer
        return
    size = min(plan.batch_size, len(train))
    saved = [copy.deepcopy(p.state_dict()) for p in (parts.model, parts.optimizer, parts.scheduler) if p is not None]
    try:
        with torch.random.fork_rng(devices=[]):
            _step(plan, parts, train.x[:size], train.y[:size])
    finally:
        for part, state in zip((p for p in (parts.model, parts.optimizer, parts.scheduler) if p is not None), saved):
            part.load_state_dict(state)
        parts.optimizer.zero_grad(set_to_none=True)
        parts.model.train()


def _step(plan: Plan, parts: Parts, x: torch.Tensor, y: torch.Tensor) -> None:
    size = x.shape[0]

    def attempt(path: tuple, what: str, step):
        try:
            return step()
        except DltrainError:
            raise
        except Exception as error:  # torch reports these problems with many exception types
            raise plan.error(path, f"{what} fails on a batch of {size} training rows: {first_line(error)}") from None

    transform = parts.data.schema.batch_transform(train=True)
    if transform is not None:
        x = attempt(("data", "inputs"), "the column's augmentation or normalization", lambda: transform(x, torch.Generator().manual_seed(0)))
    model, loss_fn, optimizer, scheduler = parts.model.train(), parts.loss_fn, parts.optimizer, parts.scheduler
    loss_name = plan.loss.name
    output = attempt(("model", "layers"), "the model", lambda: model(x))
    loss = attempt(("loss",), loss_name, lambda: loss_fn(output, y))
    if loss.numel() != 1:
        raise plan.error(("loss",), f"{loss_name} gives {tuple(loss.shape)} values per batch, not one number to minimize: leave out reduction (or use mean or sum)")
    for name, tensor in loss_fn.named_buffers():
        if not bool(torch.isfinite(tensor).all()):
            raise plan.error(("loss",), f"{loss_name}: its {name} holds nan or infinite values: {tensor.tolist()}")
    if not math.isfinite(float(loss.detach())):
        raise plan.error(("loss",), f"{loss_name} is {float(loss.detach())} on the first batch of training rows, before any step: check its arguments (a class weight of nan or inf?)")
    attempt(("loss",), loss_name, lambda: loss.backward())
    attempt(("optimizer",), plan.optimizer.name, lambda: optimizer.step())
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise plan.error(("optimizer",), f"{plan.optimizer.name}'s first step made the weights nan or infinite: check its arguments (lr: {optimizer.param_groups[0].get('lr')})")
    if scheduler is not None:
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        attempt(("scheduler",), plan.scheduler.name, lambda: scheduler.step(float(loss.detach())) if plateau else scheduler.step())

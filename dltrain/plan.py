"""config -> a validated plan: every check a config needs beyond its own shape, in one place.

`make_plan` checks what needs the registries (layer, loss, optimizer, scheduler and metric names
and arguments, column types and options) and the file system (the data sources), and reports
those problems together with the config's own, each with its file:line. The plan holds the parsed
components and the data section as plain values for the build step after it (`dltrain.build`),
which runs the checks that need the data and the built parts.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain.components import Component, ComponentError, bind, parse_component, suggest
from dltrain.config import LoadedConfig, read_config
from dltrain.config.schema import DEFAULT_OPTIMIZER, ByColumn, Files, Ratios
from dltrain.data.encoders import check_column_options
from dltrain.data.prepare import Column, DataSpec
from dltrain.data.sources import FOLDER_TYPES, ResolvedSource, resolve_source
from dltrain.errors import ConfigError, DltrainError, Problem
from dltrain.model.builder import LayerErrors, parse_layers
from dltrain.train.losses import LossEntry, check_balanced, loss_registry
from dltrain.train.metrics import METRICS
from dltrain.train.optim import SCHEDULER_INTERVALS, check_optimizer, check_scheduler, scheduler_component


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


def make_plan(config: str | Path | dict | LoadedConfig, overrides: list[str] | tuple[str, ...] = (), origin: str | None = None) -> Plan:
    """Read and check a config (a YAML path, a dict, or one read already); raise one ConfigError with every problem."""
    cfg = config if isinstance(config, LoadedConfig) else read_config(config, list(overrides), origin)
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
        problems += _logger_problems(cfg)
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
    bind(check_balanced(entry, component), entry.signature)  # `balanced` is filled by the build, from the training split
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
    if target is not None and "encoding" in target.options:
        problems.append(cfg.problem(("data", "target"), "encoding is for inputs: a target takes transform: log or quantile (or data.target_transform)"))
    if target is not None and data.target_transform is not None:
        if target.options.get("transform", data.target_transform) != data.target_transform:
            problems.append(cfg.problem(("data", "target_transform"), f"is {data.target_transform}, but the target's own transform is {target.options['transform']}: give one"))
        target = Column(target.name, target.type, {**target.options, "transform": data.target_transform})
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
        plain = source if isinstance(source, str) else source.model_dump(exclude_none=True)
        return resolve_source(plain, lambda value, key: cfg.resolve_path(value, (*path, *key)))
    except ConfigError as error:
        problems += error.problems
    except ValueError as error:
        problems.append(cfg.problem(path, str(error)))
    return None


def _column(column) -> Column:
    if isinstance(column, str):
        return Column(column)
    return Column(column.column, column.type, dict(column.model_extra or {}))


def _logger_problems(cfg: LoadedConfig) -> list[Problem]:
    """train.logger: mlflow needs the mlflow package: said now, not after the first epoch."""
    from dltrain.tracking import mlflow_missing

    if "mlflow" in cfg.config.train.loggers and mlflow_missing():
        return [cfg.problem(("train", "logger"), "mlflow is an optional extra: pip install 'dltrain[mlflow]' (or pip install mlflow), or leave mlflow out of train.logger")]
    return []


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

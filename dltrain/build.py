"""config -> the parts of a run: encoded data, the model, the loss, the optimizer and scheduler.

`fit` and `check` both start here, so what `check` prints is what `fit` trains.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dltrain.components import Component, ComponentError, bind
from dltrain.config import LoadedConfig, load_config
from dltrain.console import warn
from dltrain.data.dataset import Prepared, prepare
from dltrain.data.sources import resolve_source
from dltrain.errors import ConfigError, DltrainError
from dltrain.model.builder import LayerInfo, build_model, to_argument
from dltrain.train.losses import LossEntry, loss_registry
from dltrain.train.metrics import DEFAULTS, METRICS, higher_is_better
from dltrain.train.optim import build_optimizer, build_scheduler
from dltrain.train.trainer import count_batches


@dataclass
class Built:
    cfg: LoadedConfig
    data: Prepared
    model: nn.Sequential
    layers: list[LayerInfo]
    loss_entry: LossEntry
    loss_fn: nn.Module
    metrics: tuple[str, ...]


@contextmanager
def located(cfg: LoadedConfig):
    """Errors that name a config key become config errors citing its file and line."""
    try:
        yield
    except ConfigError:
        raise
    except ComponentError as error:
        raise cfg.error(error.path, str(error)) from None
    except DltrainError as error:
        if error.key:
            raise cfg.error(error.key, str(error)) from None
        raise


def source_resolver(cfg: LoadedConfig):
    def resolve(source, key: tuple):
        try:
            return resolve_source(source, lambda value, sub: cfg.resolve_path(value, (*key, *sub)))
        except ValueError as error:
            raise cfg.error(key, str(error)) from None

    return resolve


def build_loss(component: Component) -> tuple[LossEntry, nn.Module]:
    entry = loss_registry().get(component.name)
    extra, kwargs = bind(component, entry.signature)
    params = {p.name: p.annotation for p in entry.signature.params}
    try:
        return entry, entry.factory(*extra, **{k: to_argument(v, params.get(k)) for k, v in kwargs.items()})
    except ComponentError:
        raise
    except Exception as error:  # the loss's constructor checks its arguments its own way
        raise ComponentError(f"{component.name}: {_first_line(error)}", ("loss",)) from None


def metric_names(cfg: LoadedConfig, target_type: str) -> tuple[str, ...]:
    names = tuple(cfg.config.train.metrics) if cfg.config.train.metrics is not None else DEFAULTS[target_type]
    for name in names:
        if target_type not in METRICS.get(name).types:
            raise cfg.error(("train", "metrics"), f"metric '{name}' does not apply to a {target_type} target; these do: {', '.join(DEFAULTS[target_type])}")
    monitor = cfg.config.train.monitor.split("_", 1)[1]
    if monitor != "loss" and monitor not in names:
        if target_type not in METRICS.get(monitor).types:
            raise cfg.error(("train", "monitor"), f"monitor '{cfg.config.train.monitor}' does not apply to a {target_type} target; use val_loss or one of val_{', val_'.join(DEFAULTS[target_type])}")
        names = (*names, monitor)
    return names


def build(cfg: LoadedConfig, data: Prepared | None = None) -> Built:
    """Encode the data (unless given), build the model with its input sizes inferred, and the loss."""
    with located(cfg):
        loss_entry, loss_fn = build_loss(cfg.loss)
        if data is None:
            if cfg.config.data.in_memory:
                data = prepare(cfg.config.data, loss_entry, cfg.config.seed, source_resolver(cfg))
            else:
                from dltrain.data.stream import prepare_stream

                data = prepare_stream(cfg.config.data, loss_entry, cfg.config.seed, source_resolver(cfg))
        metrics = metric_names(cfg, data.task.target_type)
        torch.manual_seed(cfg.config.seed)
        model, layers = build_model(cfg.layers, data.input_spec, data.task.output_size)
    warn_last_layer(cfg.layers, loss_entry)
    return Built(cfg, data, model, layers, loss_entry, loss_fn, metrics)


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


def optimizer_and_scheduler(cfg: LoadedConfig, model: nn.Module, steps_per_epoch: int, higher_is_better: bool):
    with located(cfg):
        try:
            optimizer = build_optimizer(cfg.optimizer, model.parameters())
        except ComponentError:
            raise
        except Exception as error:  # the optimizer's own checks raise TypeError, ValueError, IndexError...
            raise ComponentError(f"{cfg.optimizer.name}: {_first_line(error)}", ("optimizer",)) from None
        scheduler = None
        if cfg.scheduler is not None:
            epochs = cfg.config.train.epochs
            total = epochs if cfg.scheduler_interval == "epoch" else epochs * -(-steps_per_epoch // cfg.config.train.accumulate)
            if cfg.scheduler.name == "ReduceLROnPlateau" and cfg.scheduler_interval == "step":
                raise ComponentError("ReduceLROnPlateau watches the monitored value once per epoch: use interval: epoch", ("scheduler",))
            given_total = cfg.scheduler.kwargs.get("total_steps")
            if cfg.scheduler.name == "OneCycleLR" and isinstance(given_total, int) and given_total < total:
                raise ComponentError(
                    f"OneCycleLR: total_steps {given_total} is less than the {total} {cfg.scheduler_interval}s of training "
                    "(train.epochs x batches per epoch): leave total_steps out and dltrain fills it",
                    ("scheduler",),
                )
            try:
                scheduler = build_scheduler(cfg.scheduler, optimizer, total, "max" if higher_is_better else "min")
            except ComponentError:
                raise
            except Exception as error:
                raise ComponentError(f"{cfg.scheduler.name}: {_first_line(error)}", ("scheduler",)) from None
    return optimizer, scheduler


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def rehearse(built: Built) -> None:
    """One training step on copies, on the CPU, before anything is written: every part of the config
    that only fails when it runs (a loss weight of the wrong length, `reduction: none`, an optimizer
    that needs a closure, BatchNorm on batches of one, an augmentation's bad argument, a scheduler's
    argument of the wrong type) fails here with the key to change, instead of as a traceback in epoch 1.
    """

    cfg, train = built.cfg, built.data.splits["train"]
    monitor = cfg.config.train.monitor
    if "val" not in built.data.splits and monitor.startswith("val_"):
        raise cfg.error(("train", "monitor"), f"{monitor} needs a validation split, and this data has no val rows: monitor train_loss, or give data.split a val part")
    if train.x is None:  # streamed: the first batch is read by the trainer
        return
    size = min(cfg.config.data.batch_size, len(train.y))
    x, y = train.x[:size], train.y[:size]

    def attempt(path: tuple, what: str, step):
        try:
            return step()
        except DltrainError:
            raise
        except Exception as error:  # torch reports these problems with many exception types
            raise cfg.error(path, f"{what} fails on a batch of {size} training rows: {_first_line(error)}") from None

    with torch.random.fork_rng(devices=[]):  # the run's random numbers stay as if nothing happened here
        _rehearse_step(built, cfg, x, y, attempt, monitor)


def _rehearse_step(built: Built, cfg: LoadedConfig, x, y, attempt, monitor: str) -> None:
    import copy

    train = built.data.splits["train"]
    transform = built.data.schema.batch_transform(train=True)
    if transform is not None:
        x = attempt(("data", "inputs"), "the column's augmentation or normalization", lambda: transform(x, torch.Generator().manual_seed(0)))
    model = copy.deepcopy(built.model).train()
    loss_fn = copy.deepcopy(built.loss_fn)
    output = attempt(("model", "layers"), "the model", lambda: model(x))
    loss = attempt(("loss",), cfg.loss.name, lambda: loss_fn(output, y))
    if loss.numel() != 1:
        raise cfg.error(("loss",), f"{cfg.loss.name} gives {tuple(loss.shape)} values per batch, not one number to minimize: leave out reduction (or use mean or sum)")
    for name, tensor in loss_fn.named_buffers():
        if not bool(torch.isfinite(tensor).all()):
            raise cfg.error(("loss",), f"{cfg.loss.name}: its {name} holds nan or infinite values: {tensor.tolist()}")
    if not bool(torch.isfinite(loss).all()):
        raise cfg.error(("loss",), f"{cfg.loss.name} is {float(loss)} on the first batch of training rows, before any step: check its arguments (a class weight of nan or inf?)")
    attempt(("loss",), cfg.loss.name, lambda: loss.backward())
    steps = count_batches(len(train.y), cfg.config.data.batch_size)
    optimizer, scheduler = optimizer_and_scheduler(cfg, model, steps, higher_is_better(monitor))
    attempt(("optimizer",), cfg.optimizer.name, lambda: optimizer.step())
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise cfg.error(("optimizer",), f"{cfg.optimizer.name}'s first step made the weights nan or infinite: check its arguments (lr: {optimizer.param_groups[0].get('lr')})")
    if scheduler is not None:
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        attempt(("scheduler",), cfg.scheduler.name, lambda: scheduler.step(float(loss)) if plateau else scheduler.step())


def check(config: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Built:
    """`dltrain check`: everything `fit` does before its first batch; raises the errors `fit` would raise."""
    cfg = load_config(config, list(overrides))
    built = build(cfg)
    rehearse(built)
    return built

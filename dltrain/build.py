"""A plan -> the parts of a run, each built once: the data encoded, the model with its input sizes
inferred, the loss, the optimizer and the scheduler; then the checks that need them. `fit` trains
the parts; `check` prints them.

Two kinds of check need the data or the built parts, and run here: the metrics and the monitor
once the target's type and the splits are known, and `rehearse`, one training step on the built
parts, undone, so that what only fails when it runs fails before a run directory is made, with
the key to change.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from dltrain.components import Component
from dltrain.console import note, warn
from dltrain.data.batches import TensorSplit
from dltrain.data.prepare import Prepared, prepare
from dltrain.errors import DltrainError, first_line
from dltrain.model.builder import LayerInfo, build_model, memory_limit
from dltrain.plan import Plan
from dltrain.task import BINARY, Task
from dltrain.train.losses import LossEntry, balanced_weights, resolve_balanced
from dltrain.train.metrics import DEFAULTS, METRICS, higher_is_better
from dltrain.train.optim import build_optimizer, build_scheduler
from dltrain.train.trainer import count_batches


@dataclass
class Parts:
    """Everything a run trains, built from its plan (which `check` prints beside it)."""

    plan: Plan
    data: Prepared
    task: Task
    metrics: tuple[str, ...]  # computed each epoch
    model: nn.Sequential
    layers: list[LayerInfo]  # the table `check` prints
    loss: Component  # as built: `balanced` replaced by the training split's weights (what checkpoints keep)
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    sample_weights: torch.Tensor | None = None  # data.sampler: balanced, a weight per training row


def build(plan: Plan, data: Prepared | None = None, world: int = 1, loss: Component | None = None) -> Parts:
    """Encode the data (unless given: --resume rebuilds the run's own), build the model, the loss
    (`loss`: the run's own as recorded, its balanced weights included), the optimizer and the
    scheduler. `world` is the number of processes sharing each batch (DDP)."""
    entry = plan.loss_entry
    with plan.located():
        if data is None:
            data = prepare(plan.data, entry.name, entry.form)
        task = Task.of(entry.form, entry.output, data.schema.target)
        metrics = metric_names(plan, task.target_type)
        check_monitor(plan, data.splits)
        task = _threshold(plan, task, data.splits)
        train = data.splits["train"]
        if loss is None:
            loss = resolve_balanced(entry, plan.loss, train.y, task.output_size)
            if loss is not plan.loss:
                note(f"{entry.name} {entry.balanced}: balanced, from the training split's class counts: {loss.kwargs[entry.balanced]}")
        loss_fn = entry.build(loss)
        sample_weights = _sample_weights(plan, task, train)
        torch.manual_seed(plan.seed)  # the initial weights
        model, layers = build_model(plan.layers, data.input_spec, task.output_size)
        optimizer, scheduler = _optimizer_and_scheduler(plan, model, count_batches(len(train), plan.batch_size, world))
    warn_last_layer(plan.layers, entry)
    return Parts(plan, data, task, metrics, model, layers, loss, loss_fn, optimizer, scheduler, sample_weights)


def _threshold(plan: Plan, task: Task, splits: dict) -> Task:
    """train.threshold: binary targets only; auto needs a validation split to choose it on."""
    threshold = plan.train.threshold
    if threshold == 0.5:
        return task
    if task.target_type != BINARY:
        raise plan.error(("train", "threshold"), f"a decision threshold applies to a binary target; this target is {task.target_type}: leave train.threshold out")
    if threshold == "auto":
        if "val" not in splits:
            raise plan.error(("train", "threshold"), "auto chooses the threshold on the validation split, and this data has no val rows: give data.split a val part, or a number in (0, 1)")
        return task  # 0.5 until the trainer chooses it on the validation split
    return replace(task, threshold=float(threshold))


def _sample_weights(plan: Plan, task: Task, train) -> torch.Tensor | None:
    """data.sampler: balanced: each training row weighted by n / (classes x its class's count)."""
    if plan.cfg.config.data.sampler != "balanced":
        return None
    if not task.is_classification:
        raise plan.error(("data", "sampler"), f"balanced draws every class as often, and this target is {task.target_type}: leave data.sampler out")
    if not isinstance(train, TensorSplit):
        raise plan.error(("data", "sampler"), "balanced draws rows at random from the whole training split, which needs the data in memory: set data.in_memory: true, or leave data.sampler out")
    labels = task.labels(train.y).cpu()
    weights = torch.tensor(balanced_weights(labels, len(task.classes)), dtype=torch.double)
    return weights[labels]


def _optimizer_and_scheduler(plan: Plan, model: nn.Module, steps_per_epoch: int):
    optimizer = build_optimizer(plan.optimizer, model.parameters())
    if plan.scheduler is None:
        return optimizer, None
    train = plan.train
    # the schedule's length in its interval: epochs, or optimizer steps
    total = train.epochs if plan.scheduler_interval == "epoch" else train.epochs * -(-steps_per_epoch // train.accumulate)
    given = plan.scheduler.kwargs.get("total_steps")
    if plan.scheduler.name == "OneCycleLR" and isinstance(given, int) and given < total:
        raise plan.error(
            ("scheduler",),
            f"OneCycleLR: total_steps {given} is less than the {total} {plan.scheduler_interval}s of training "
            "(train.epochs x batches per epoch): leave total_steps out and dltrain fills it",
        )
    mode = "max" if higher_is_better(train.monitor) else "min"
    return optimizer, build_scheduler(plan.scheduler, optimizer, total, mode)


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
    check_training_memory(plan, parts)
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


# what a training step adds to the weights it has: a gradient for each, the optimizer's state (Adam:
# two moments) and the rehearsal's copy; each layer's output for a batch, kept for the backward
# pass, and its gradient
STEP_BYTES_PER_PARAMETER = 16
STEP_BYTES_PER_OUTPUT = 8


def check_training_memory(plan: Plan, parts: Parts) -> None:
    """A model whose training step cannot fit in the memory left (its gradients, the optimizer's
    state, each layer's outputs for a batch) is an exit 2 naming the sizes, before the step is tried:
    the kernel would kill the process without a word."""
    weights = [p for p in parts.model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)]
    device = weights[0].device if weights else torch.device("cpu")
    if device.type == "cuda":
        limit = torch.cuda.mem_get_info(device)[0]
    elif device.type == "cpu":
        limit = memory_limit()
    else:
        return
    count = sum(p.numel() for p in weights)
    outputs = [(math.prod(info.output_shape), info.name) for info in parts.layers]
    train = parts.data.splits.get("train")
    batch = min(plan.batch_size, len(train)) if isinstance(train, TensorSplit) and len(train) else plan.batch_size
    for_weights = count * STEP_BYTES_PER_PARAMETER
    for_outputs = sum(n for n, _ in outputs) * batch * STEP_BYTES_PER_OUTPUT
    if for_weights + for_outputs <= limit:
        return
    largest, name = max(outputs, key=lambda o: o[0]) if outputs else (0, "")  # the first of the largest

    def gb(n: float) -> str:
        return f"{n / 2**30:,.1f} GB"

    raise plan.error(
        ("model", "layers"),
        f"a training step of this model needs about {gb(for_weights + for_outputs)} more memory: {gb(for_weights)} for the "
        f"gradients and optimizer state of its {count:,} weights, and {gb(for_outputs)} for the layers' outputs on a batch "
        f"of {batch} rows ({name} alone gives {largest:,} values per row); the process has {gb(limit)} left"
        + (" on the GPU" if device.type == "cuda" else "")
        + ". Make the layers smaller, or data.batch_size smaller",
    )


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

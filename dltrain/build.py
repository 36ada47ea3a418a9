"""A plan -> the parts of a run, each built once: the data encoded, the model with its input sizes
inferred, the loss, the optimizer and the scheduler. `fit` trains them; `check` prints them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dltrain.data.prepare import Prepared, prepare
from dltrain.model.builder import LayerInfo, build_model
from dltrain.plan import Plan, check_monitor, metric_names, warn_last_layer
from dltrain.task import Task
from dltrain.train.metrics import higher_is_better
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
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None


def build(plan: Plan, data: Prepared | None = None, world: int = 1) -> Parts:
    """Encode the data (unless given: --resume rebuilds the run's own), build the model, the loss,
    the optimizer and the scheduler. `world` is the number of processes sharing each batch (DDP)."""
    entry = plan.loss_entry
    with plan.located():
        if data is None:
            data = prepare(plan.data, entry.name, entry.form)
        task = Task.of(entry.form, entry.output, data.schema.target)
        metrics = metric_names(plan, task.target_type)
        check_monitor(plan, data.splits)
        loss_fn = entry.build(plan.loss)
        torch.manual_seed(plan.seed)  # the initial weights
        model, layers = build_model(plan.layers, data.input_spec, task.output_size)
        optimizer, scheduler = _optimizer_and_scheduler(plan, model, count_batches(len(data.splits["train"]), plan.batch_size, world))
    warn_last_layer(plan.layers, entry)
    return Parts(plan, data, task, metrics, model, layers, loss_fn, optimizer, scheduler)


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

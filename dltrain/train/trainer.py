"""The shared training loop: batches, epochs, validation, best and last checkpoints, early stopping.

It knows nothing of YAML or files: it receives a `Job` (a model, a loss, an optimizer, the splits
as batches) and a `Sink` that writes what it reports. One loop serves data in memory and data
streamed from disk: both give (inputs, targets) batches on the device. The hot path does no
Python work per sample and no host sync per step: losses and outputs stay on the device and are
read once per epoch.
"""

from __future__ import annotations

import gc
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

import numpy as np
import torch
from torch import nn

from dltrain.console import warn
from dltrain.errors import TrainingError
from dltrain.task import Task
from dltrain.train import metrics as metric_registry
from dltrain.train.distributed import SINGLE, Group
from dltrain.train.progress import Progress, Silent


@dataclass
class Settings:
    epochs: int
    batch_size: int
    shuffle: bool = True
    grad_clip: float | None = None
    accumulate: int = 1
    monitor: str = "val_loss"
    patience: int | None = None  # early stopping
    min_delta: float = 0.0
    metrics: tuple[str, ...] = ()
    scheduler_interval: str = "epoch"
    precision: str = "32"
    seed: int = 0
    choose_threshold: bool = False  # a binary target: choose each epoch the threshold that maximizes F1 on the val split


class Sink(Protocol):
    """Where the trainer's results go (the run directory)."""

    def epoch_row(self, row: dict) -> None: ...
    def checkpoint(self, state: dict, names: tuple[str, ...]) -> None: ...  # ("last.pt", "best.pt") or ("last.pt",), in that order
    def close(self) -> None: ...  # training is over: make what was written durable


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; `last.pt` holds the position to resume from."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = None  # set by whoever knows where last.pt went


class StopSignal:
    """Which signal asked training to stop, if any."""

    signum: int | None = None


@contextmanager
def catch_signals():
    """SIGINT and SIGTERM set a flag instead of killing the process: the loop saves and stops."""
    stop = StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Batches(Protocol):
    """A split as the trainer reads it (dltrain.data.batches): (inputs, targets) on the device."""

    y: torch.Tensor  # every target of the split

    def __len__(self) -> int: ...
    def draw_order(self, generator: torch.Generator) -> torch.Tensor: ...
    def batches(
        self, batch_size: int, count: int | None = None, order: torch.Tensor | None = None, start: int = 0, share: Callable | None = None
    ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]: ...


@dataclass
class Job:
    """What one run trains, every part built before the trainer starts."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    task: Task
    train: Batches
    val: Batches | None = None
    sample_weights: torch.Tensor | None = None  # a weight per training row: each epoch draws rows with replacement by them
    train_transform: Callable | None = None  # stored inputs -> model inputs, per batch (images: normalize, augment)
    val_transform: Callable | None = None
    forward: nn.Module | None = None  # what batches go through (compiled and/or DDP); checkpoints use `model`


@dataclass
class Result:
    history: list[dict]
    best_epoch: int | None
    best_value: float
    stopped_early: bool = False
    pruned: bool = False  # stopped by `watch` (a tuner's pruner)
    threshold: float | None = None  # the decision threshold chosen for the best epoch (Settings.choose_threshold)


@dataclass
class _State:
    """What --resume needs besides the model, optimizer and scheduler."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch (after an interruption)
    order: torch.Tensor | None = None  # the current epoch's order (a permutation of the rows, or a stream's seed)
    step_losses: list[torch.Tensor] | None = None  # None between epochs
    outputs: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)  # the targets of `outputs`, batch by batch
    seconds: float = 0.0  # time already spent in the current epoch
    best_value: float = math.nan
    best_epoch: int | None = None
    best_loss: float = math.nan  # the best epoch's val_loss: what breaks a tie on another monitor
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    threshold: float | None = None  # chosen on the last epoch's validation outputs (Settings.choose_threshold)
    best_threshold: float | None = None  # and on the best epoch's


class Trainer:
    def __init__(
        self,
        job: Job,
        settings: Settings,
        sink: Sink,
        *,
        device: torch.device,
        progress: Progress | None = None,
        stop: StopSignal | None = None,
        group: Group = SINGLE,
        watch: Callable[[dict], bool] | None = None,
    ):
        self.job, self.settings, self.sink, self.device, self.group = job, settings, sink, device, group
        self.watch = watch  # after each epoch's checkpoint: True stops training (a tuner prunes the trial)
        self.model, self.loss_fn, self.optimizer, self.scheduler = job.model, job.loss_fn, job.optimizer, job.scheduler
        self.forward = job.forward or job.model
        self.progress = progress or Silent()
        self.generator = torch.Generator().manual_seed(settings.seed)  # the order of training rows
        self.augment_generator = torch.Generator().manual_seed(settings.seed + 1)
        self.state = _State()
        self.higher = metric_registry.higher_is_better(settings.monitor)
        self.stop = stop  # set by SIGINT / SIGTERM; checked after every batch
        dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(settings.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 and device.type == "cuda" else None

    # ----- the loop

    def fit(self) -> Result:
        s = self.settings
        with _quiet_collector(), catch_signals() if self.stop is None else nullcontext(self.stop) as stop:
            self.stop = stop
            try:
                while self.state.epoch < s.epochs:
                    row = self._epoch()
                    self.state.history.append(row)
                    self.progress.end_epoch(row)
                    stop_early = self._after_epoch(row)  # the checkpoints first: metrics.csv never runs ahead of last.pt
                    if self.group.main:
                        self.sink.epoch_row(row)
                    prune = self.watch is not None and self.watch(row)  # told every epoch, the last too
                    if stop_early:
                        return self._result(stopped_early=True)
                    if prune and self.state.epoch < s.epochs:
                        return self._result(pruned=True)
            finally:
                self.progress.close()
                if self.group.main:
                    self.sink.close()
        return self._result()

    def _result(self, stopped_early: bool = False, pruned: bool = False) -> Result:
        st = self.state
        return Result(st.history, st.best_epoch, st.best_value, stopped_early, pruned, st.best_threshold if self.settings.choose_threshold else None)

    def _draw_order(self, split: Batches) -> torch.Tensor | None:
        """The epoch's order: rows drawn with replacement by their weights (torch's
        WeightedRandomSampler: as many as the split has), or a shuffle, from the one generator
        that checkpoints keep."""
        weights = self.job.sample_weights
        if weights is not None:
            return torch.multinomial(weights, len(split), replacement=True, generator=self.generator)
        return split.draw_order(self.generator) if self.settings.shuffle else None

    def _epoch(self) -> dict:
        s, st, g, split = self.settings, self.state, self.group, self.job.train
        epoch = st.epoch + 1
        batches = count_batches(len(split), s.batch_size, g.world)
        if st.step_losses is None:  # a new epoch, not one resumed part-way
            st.order = self._draw_order(split)
            st.step_losses, st.outputs, st.targets, st.seconds = [], [], [], 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        self.progress.start_epoch(epoch, s.epochs, batches, st.batch, len(split), st.step_losses)  # the bar reads the losses rarely
        self.model.train()
        self._stop_if_signalled(st.batch, start, agree=True)
        rows = split.batches(s.batch_size, batches, st.order, st.batch, g.share if g.enabled else None)
        # the hot path: names bound once, the plain step taken without the checks it does not need
        plain = self._plain_steps()
        forward, loss_fn, optimizer, stop = self.forward, self.loss_fn, self.optimizer, self.stop
        transform, augment = self.job.train_transform, self.augment_generator
        keep_loss, keep_output, keep_target = st.step_losses.append, st.outputs.append, st.targets.append
        advance = self.progress.advance if self.progress.live else None  # a line per epoch or nothing: no call per step
        nothing = torch.zeros((), device=self.device)
        for i, (xb, yb) in enumerate(rows, start=st.batch):
            if xb is None:  # a streamed batch of which no file could be read (data.on_error: skip)
                keep_loss(nothing)
            else:
                if transform is not None:
                    xb = transform(xb, augment)
                if plain:
                    output = forward(xb)
                    loss = loss_fn(output, yb)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                else:
                    with self.autocast():
                        output = forward(xb)
                        loss = loss_fn(output, yb)
                    self._backward(loss, i, batches)
                # kept on the device, read once at the end of the epoch: no host sync per step
                keep_loss(loss.detach())
                keep_output(output.detach())
            keep_target(yb)
            if advance is not None:
                advance(1)
            if g.enabled:
                if i % _AGREE_EVERY == 0 or i == batches - 1:  # a signal stops every rank at one batch
                    self._stop_if_signalled(i + 1, start, agree=True)
            elif stop.signum is not None:
                self._stop_if_signalled(i + 1, start)
        sizes = torch.tensor([t.shape[0] for t in st.targets], dtype=torch.float32, device=self.device)
        losses = torch.stack(st.step_losses).float()
        train_loss = float(g.sum((losses * sizes).sum())) / max(float(g.sum(sizes.sum())), 1.0)
        if not math.isfinite(train_loss):
            self._explain_non_finite(losses, epoch, batches)
        row: dict = {"epoch": epoch, "train_loss": train_loss}
        outputs, targets = torch.cat(st.outputs), torch.cat(st.targets)
        st.outputs, st.targets = [], []  # one copy at a time: the epoch's outputs are the largest thing kept
        row.update(self._metrics("train", g.gather_rows(outputs), g.gather_rows(targets)))
        del outputs, targets
        if self.job.val is not None:
            val_loss, val_outputs, val_targets = self._validate()
            row["val_loss"] = val_loss
            row.update(self._metrics("val", val_outputs, val_targets))
            if s.choose_threshold:
                st.threshold = metric_registry.best_f1_threshold(self.job.task, val_outputs.float(), val_targets)
        row["lr"] = lr
        row["seconds"] = st.seconds + time.perf_counter() - start
        st.epoch, st.batch, st.order, st.step_losses = epoch, 0, None, None
        return row

    def _validate(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The mean loss, the raw outputs and the targets of the validation split, in eval mode.

        Under DDP each rank takes its share of each batch, and outputs are gathered without padding
        duplicates: the metrics are those of one process.
        """
        g = self.group
        self.model.eval()
        batches = self.job.val.batches(self._eval_batch, share=g.share if g.enabled else None)
        # the plain model: DDP's forward would sync buffers for every validation batch
        seen = infer(self.model, self.loss_fn, batches, self.job.val_transform, self.autocast)
        rows = float(g.sum(torch.tensor(float(seen.rows), device=self.device)))
        return float(g.sum(seen.loss_sum)) / max(rows, 1.0), g.gather_rows(seen.outputs), g.gather_rows(seen.targets)

    def _explain_non_finite(self, losses: torch.Tensor, epoch: int, batches: int) -> None:
        finite = torch.isfinite(losses)
        bad = int(torch.nonzero(~finite)[0]) if not bool(finite.all()) else 0
        raise TrainingError(
            f"the loss became {float(losses[bad])} in epoch {epoch}, batch {bad + 1} of {batches}. "
            "Try a lower learning rate (optimizer.lr), gradient clipping (train.grad_clip: 1.0), or check the "
            "data for extreme values; "
            + (f"best.pt keeps the weights of epoch {self.state.best_epoch}" if self.state.best_epoch is not None else "no epoch finished, so no checkpoint was written")
        )

    def _stop_if_signalled(self, batch: int, start: float, agree: bool = False) -> None:
        """After a signal: save last.pt at this batch (the epoch's order kept), then stop.

        With `agree`, the ranks first agree whether any of them was signalled (a collective call).
        """
        signalled = self.stop.signum is not None
        if agree:
            signalled = self.group.any(signalled, self.device)
        if not signalled:
            return
        st = self.state
        st.batch, st.seconds = batch, st.seconds + time.perf_counter() - start
        self._save(best=False)
        raise Interrupted(self.stop.signum or signal.SIGTERM)

    @property
    def _eval_batch(self) -> int:
        """Validation keeps no activations for backward: four training batches fit where one did."""
        return 4 * self.settings.batch_size

    def _plain_steps(self) -> bool:
        """True when a step is just backward, step, zero_grad: no accumulation, clipping, scaling,
        mixed precision or per-step scheduler to look after."""
        s = self.settings
        return (
            s.accumulate == 1
            and s.grad_clip is None
            and self.scaler is None
            and self.autocast is nullcontext
            and not (self.scheduler is not None and s.scheduler_interval == "step")
        )

    def _backward(self, loss: torch.Tensor, i: int, batches: int) -> None:
        s = self.settings
        scaled = loss / s.accumulate if s.accumulate > 1 else loss
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        if (i + 1) % s.accumulate and i + 1 < batches:
            return
        if s.grad_clip is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and s.scheduler_interval == "step":
            self.scheduler.step()

    def _metrics(self, split: str, outputs: torch.Tensor, target: torch.Tensor) -> dict:
        outcome = metric_registry.Outcome(self.job.task, outputs.float(), target, split)
        return {f"{split}_{k}": v for k, v in metric_registry.compute(self.settings.metrics, outcome).items()}

    def _after_epoch(self, row: dict) -> bool:
        """Scheduler, best checkpoint, early stopping. True when training should stop."""
        s, st = self.settings, self.state
        value = row.get(s.monitor, math.nan)
        if self.scheduler is not None and s.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(value)
            else:
                self.scheduler.step()
        improved = math.isfinite(value) and (
            st.best_epoch is None
            or (value > st.best_value + s.min_delta if self.higher else value < st.best_value - s.min_delta)
        )
        # a tie on a metric that saturates (val_accuracy 1.0 from epoch 2 on) goes to the lower val_loss:
        # the same answers, given with more confidence
        loss = row.get("val_loss", math.nan)
        tied = (
            not improved
            and s.monitor != "val_loss"
            and math.isfinite(value)
            and value == st.best_value
            and math.isfinite(loss)
            and math.isfinite(st.best_loss)
            and loss < st.best_loss
        )
        best = bool((improved or tied) and _finite_weights(self.model))
        if best:
            st.best_value, st.best_epoch, st.bad_epochs, st.best_threshold = value, row["epoch"], 0, st.threshold
            st.best_loss = loss
        else:
            st.bad_epochs += 1
        self._save(best)  # one state, serialized once, for last.pt (and best.pt)
        return s.patience is not None and st.bad_epochs >= s.patience

    # ----- checkpoints

    def _save(self, best: bool) -> None:
        state = self.state_dict()  # on every rank: it gathers each rank's random states
        if self.group.main:
            # last.pt first: a disk that fills before best.pt still leaves this state to resume from
            self.sink.checkpoint(state, ("last.pt", "best.pt") if best else ("last.pt",))

    def _own_state(self) -> dict:
        """What differs between ranks: random states, and what a stopped epoch measured so far."""
        st = self.state
        partial = None
        if st.step_losses is not None:  # stopped inside an epoch: keep its order and what it measured
            partial = {
                "order": st.order,
                "step_losses": torch.stack(st.step_losses).cpu() if st.step_losses else torch.zeros(0),
                "outputs": torch.cat(st.outputs).cpu() if st.outputs else None,
                "targets": torch.cat(st.targets).cpu() if st.targets else None,
                "sizes": [t.shape[0] for t in st.targets],
                "seconds": st.seconds,
            }
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": _plain_random_state(),
            "numpy": _plain_numpy_state(),
            "shuffle": self.generator.get_state(),
            "augment": self.augment_generator.get_state(),
        }
        return {"partial": partial, "rng": rng}

    def state_dict(self) -> dict:
        st = self.state
        ranks = self.group.gather_objects(self._own_state())
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": st.epoch,
            "batch": st.batch,
            "partial": ranks[0]["partial"],
            "best": {"value": st.best_value, "epoch": st.best_epoch, "bad_epochs": st.bad_epochs, "threshold": st.best_threshold, "loss": st.best_loss},
            # a binary target's decision threshold for these weights: what evaluate and predict use
            "threshold": st.threshold if st.threshold is not None else self.job.task.threshold,
            "history": [dict(r) for r in st.history],
            "rng": ranks[0]["rng"],
            "ranks": ranks[1:],  # the other ranks' parts, under DDP
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where a checkpoint stopped (--resume)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        st = self.state
        st.epoch, st.batch = state["epoch"], state["batch"]
        best = state["best"]
        st.best_value, st.best_epoch, st.bad_epochs = best["value"], best["epoch"], best["bad_epochs"]
        st.best_threshold = best.get("threshold")
        st.best_loss = best.get("loss", math.nan)  # absent in checkpoints before ties were broken by it
        st.threshold = state.get("threshold") if self.settings.choose_threshold else None
        st.history = [dict(r) for r in state["history"]]
        own = {"partial": state.get("partial"), "rng": state["rng"]}
        others = state.get("ranks") or []
        if self.group.rank > 0 and len(others) == self.group.world - 1:
            own = others[self.group.rank - 1]
        elif self.group.world != len(others) + 1:
            warn(f"this run was trained on {len(others) + 1} process(es) and continues on {self.group.world}: "
                 "it goes on from the same weights, but not exactly as an unbroken run would")
        partial = own["partial"]
        if partial is not None and st.batch and self.group.world != len(others) + 1:
            partial = None
            st.batch = 0  # the epoch's shares differ: start it again
        if partial:
            st.order = partial["order"]
            st.step_losses = list(partial["step_losses"].to(self.device).unbind())
            st.outputs = [partial["outputs"].to(self.device)] if partial["outputs"] is not None else []
            st.targets = self._targets_done(partial)
            st.seconds = partial["seconds"]
        rng = own["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(_tuple_state(rng["python"]))
        if rng.get("numpy") is not None:
            np.random.set_state(_numpy_state(rng["numpy"]))
        self.generator.set_state(rng["shuffle"])
        self.augment_generator.set_state(rng["augment"])

    def _targets_done(self, partial: dict) -> list[torch.Tensor]:
        """The targets of the batches an interrupted epoch had done, batch by batch."""
        targets = partial.get("targets")
        if targets is not None:
            return list(targets.to(self.device).split([int(n) for n in partial["sizes"]]))
        if partial["outputs"] is None:
            return []
        # dltrain 0.1, data in memory: they are the targets of those batches, drawn again in the same order
        s, g, split = self.settings, self.group, self.job.train
        count = count_batches(len(split), s.batch_size, g.world)
        done = split.batches(s.batch_size, count, partial["order"], 0, g.share if g.enabled else None)
        return [yb for _, yb in islice(done, self.state.batch)]


@dataclass
class Seen:
    """What a model gave on a split: the summed loss (a device scalar), rows, outputs and targets."""

    loss_sum: torch.Tensor
    rows: int
    outputs: torch.Tensor
    targets: torch.Tensor | None


def infer(forward, loss_fn, batches, transform: Callable | None = None, autocast=nullcontext) -> Seen:
    """`forward` over (inputs, targets) batches under inference mode: outputs, and the loss where
    there are targets. Batches whose inputs are None (no file readable) are passed over."""
    outputs, targets, total, rows = [], [], None, 0
    with torch.inference_mode():
        for xb, yb in batches:
            if xb is None:
                continue
            if transform is not None:
                xb = transform(xb)
            with autocast():
                output = forward(xb)
                if yb is not None and loss_fn is not None:
                    part = loss_fn(output, yb).float() * output.shape[0]
                    total = part if total is None else total + part
            outputs.append(output.float())
            if yb is not None:
                targets.append(yb)
            rows += output.shape[0]
    device = outputs[0].device if outputs else torch.device("cpu")
    return Seen(
        total if total is not None else torch.zeros((), device=device),
        rows,
        (torch.cat(outputs) if len(outputs) > 1 else outputs[0]) if outputs else torch.zeros((0, 1), device=device),
        torch.cat(targets) if targets else None,
    )


@contextmanager
def _quiet_collector():
    """Training allocates a few objects per step; the cyclic garbage collector would keep walking
    every object the process made before (torch's modules, the config, the table, the encoders).
    Freeze those (a full collection first would cost a tenth of a second for the little it frees)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_AGREE_EVERY = 16  # under DDP, batches between two checks that no rank was signalled


def count_batches(n: int, batch_size: int, world: int = 1) -> int:
    """Batches of an epoch. A last batch too small to give every process two rows joins the one before
    (BatchNorm cannot train on one row, and DDP needs every rank to take part in every step)."""
    batches = max(1, math.ceil(n / batch_size))
    remainder = n % batch_size
    return batches - 1 if batches > 1 and 0 < remainder < 2 * world else batches


def _finite_weights(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _plain_random_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _tuple_state(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _plain_numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state(state: dict) -> tuple:
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["cached"])

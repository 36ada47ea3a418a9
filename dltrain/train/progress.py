"""Progress: a live Rich bar on a terminal, one plain line per epoch otherwise.

Both end an epoch with the same compact line, at most 100 columns (or a wider terminal's width):
`epoch  3/40  loss 0.0504/0.0366  acc 0.9714/1.0000  mF1 0.9702/0.9965  2.1s`, train/val pairs,
the same four decimals for every value, and, when the metrics do not fit, the least telling of
them left out (metrics.csv has all of them) rather than a wrapped line.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Protocol

WIDTH = 100  # the summary line's budget: a log's, and a terminal's at the least

# short names for the standard metrics, so that a line of them fits
SHORT = {
    "loss": "loss",
    "accuracy": "acc",
    "balanced_accuracy": "bal_acc",
    "precision": "prec",
    "recall": "rec",
    "f1": "f1",
    "macro_f1": "mF1",
    "auc": "auc",
    "mae": "mae",
    "rmse": "rmse",
    "r2": "r2",
}
# the metrics kept first when not all fit (after the loss and the monitored metric)
_RANK = ("balanced_accuracy", "macro_f1", "auc", "accuracy", "f1", "r2", "rmse", "mae", "precision", "recall")


class Progress(Protocol):
    live: bool  # True: the trainer calls `advance` after every batch; False: never (no per-step work)

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int, rows: int = 0, losses: list | None = None) -> None: ...
    def advance(self, batches: int) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def close(self) -> None: ...


def bare(name: str) -> str:
    """A metric's name without its split: val_accuracy -> accuracy, train_loss -> loss."""
    return name.split("_", 1)[1] if name.startswith(("val_", "train_")) else name


def number(value: float | None, wide: bool = False) -> str:
    """Four decimals (1.0000, not 1); a value of 10,000 or more (an MSE) in exponent form."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3e}" if wide else f"{value:.4f}"


def _pair(row: dict, name: str, paired: bool) -> str | None:
    train, val = row.get(f"train_{name}"), row.get(f"val_{name}") if paired else None
    train = train if isinstance(train, float | int) else None
    val = val if isinstance(val, float | int) else None
    if train is None and val is None:
        return None
    # one form for both values of a metric: two losses of 12 and 0.5 read 12.0000/0.5000
    wide = any(v is not None and math.isfinite(v) and abs(v) >= 1e4 for v in (train, val))
    values = f"{number(train, wide)}/{number(val, wide)}" if paired else number(train, wide)
    return f"{SHORT.get(name, name)} {values}"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def epoch_label(epoch: int, epochs: int) -> str:
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs}"


def summary(row: dict, metrics: list[str] | tuple[str, ...], monitor: str, epochs: int, width: int = WIDTH) -> str:
    """The epoch's line: the loss and each metric as train/val (train alone without a val split),
    within `width` columns, the loss and the monitored metric always, then the others by _RANK."""
    paired = "val_loss" in row
    names = ["loss", *(m for m in metrics if m != "loss")]
    parts = {name: text for name in names if (text := _pair(row, name, paired)) is not None}
    head, tail = epoch_label(row["epoch"], epochs), duration(row.get("seconds"))
    watched = bare(monitor)
    first = [n for n in ("loss", watched) if n in parts]
    rest = sorted((n for n in parts if n not in first), key=lambda n: _RANK.index(n) if n in _RANK else len(_RANK) + names.index(n))
    length, chosen = len(head) + 2 + len(tail), set()
    for name in [*dict.fromkeys(first), *rest]:
        extra = len(parts[name]) + 2
        if name in first or length + extra <= width:
            chosen.add(name)
            length += extra
    return "  ".join([head, *(parts[n] for n in names if n in chosen), tail])


class Silent:
    live = False

    def __init__(self, metrics=(), monitor: str = "val_loss"):
        self.metrics, self.monitor = list(metrics), monitor

    def start_epoch(self, epoch, epochs, batches, done, rows=0, losses=None) -> None:
        self.epochs = epochs

    def advance(self, batches) -> None:
        pass

    def end_epoch(self, row) -> None:
        pass

    def close(self) -> None:
        pass

    def line(self, row: dict, width: int = WIDTH) -> str:
        return summary(row, self.metrics, self.monitor, self.epochs, width)

    def legend(self, row: dict) -> str | None:
        """Said once, above the first epoch's line."""
        if "val_loss" not in row:
            return None
        return "each value: train/val  (every metric of every epoch: metrics.csv)"


class Lines(Silent):
    """One line per epoch, for logs of batch jobs: no per-step work."""

    told = False

    def end_epoch(self, row) -> None:
        from dltrain.console import note

        if not self.told and (legend := self.legend(row)):
            note(legend)
        self.told = True
        note(self.line(row))


class Bar(Silent):
    """A live bar of the batches of the epoch (samples/s, the running loss, the epoch's and the
    run's time left), and the epoch's line above it when it ends.

    `advance` costs a counter and a clock read: the loss, kept on the device by the trainer, is
    read (one host sync) only when the bar is redrawn, at most every `every` seconds.
    """

    live = True
    every = 0.25  # seconds between updates of the bar (and reads of the loss)
    span = 10.0  # seconds: the rate (samples/s and the times left) is that of the last ones
    window = 20  # the running loss: the mean of the steps since the last read, of this many at the least

    def __init__(self, metrics=(), monitor: str = "val_loss", console=None):
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        from dltrain.console import err

        super().__init__(metrics, monitor)
        self.console = console or err()
        self.bar = RichProgress(
            TextColumn("{task.fields[label]}"),
            BarColumn(bar_width=20),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn(" {task.fields[speed]}"),
            TextColumn(" loss {task.fields[loss]}"),
            TextColumn(" {task.fields[left]}"),
            console=self.console,
            transient=True,
            refresh_per_second=5,
        )
        self.bar.start()
        self.task = None
        self.told = False
        self.durations: list[float] = []  # the finished epochs' seconds, validation included
        self.reads = 0  # how often the loss was read (a host sync each)
        self.losses: list | None = None

    def start_epoch(self, epoch, epochs, batches, done, rows=0, losses=None) -> None:
        self.epoch, self.epochs, self.total, self.completed = epoch, epochs, batches, done
        self.rows_per_batch = rows / batches if batches else 0.0
        self.losses, self.read = losses, len(losses) if losses is not None else 0
        self.loss = "-"
        self.last = time.perf_counter()
        self.seen = deque([(self.last, done)])  # (time, batches done): the rate of the last seconds
        fields = {"label": epoch_label(epoch, epochs), "speed": "- samples/s", "loss": "-", "left": self._left(None)}
        if self.task is None:
            self.task = self.bar.add_task("", total=batches, completed=done, **fields)
        else:
            self.bar.reset(self.task, total=batches, completed=done, **fields)

    def advance(self, batches) -> None:
        self.completed += batches
        now = time.perf_counter()
        if now - self.last >= self.every or self.completed >= self.total:
            self._update(now)

    def _update(self, now: float) -> None:
        self.last = now
        seen = self.seen
        seen.append((now, self.completed))
        while len(seen) > 2 and now - seen[1][0] >= self.span:
            seen.popleft()
        elapsed = now - seen[0][0]
        rate = (self.completed - seen[0][1]) / elapsed if elapsed > 0 else 0.0  # batches a second
        speed = rate * self.rows_per_batch
        self.bar.update(
            self.task,
            completed=self.completed,
            speed=f"{speed:,.0f} samples/s" if speed >= 10 else f"{speed:.1f} samples/s",
            loss=self._read_loss(),
            left=self._left(rate),
        )

    def _read_loss(self) -> str:
        losses = self.losses
        if not losses:
            return self.loss
        n = len(losses)
        if n > self.read:
            import torch

            recent = losses[max(0, n - max(n - self.read, self.window)) : n][-1000:]
            self.loss = number(float(torch.stack(recent).float().mean()))
            self.read = n
            self.reads += 1
        return self.loss

    def _left(self, rate: float | None) -> str:
        """The epoch's time left and the run's: from the mean of the finished epochs, or before
        one has finished, from this epoch's rate."""
        if not rate:
            return "eta -  run -"
        epoch_left = (self.total - self.completed) / rate
        per_epoch = sum(self.durations) / len(self.durations) if self.durations else self.total / rate
        run_left = epoch_left + (self.epochs - self.epoch) * per_epoch
        return f"eta {duration(epoch_left)}  run {duration(run_left)}"

    def end_epoch(self, row) -> None:
        self.durations.append(float(row.get("seconds", 0.0)))
        if not self.told and (legend := self.legend(row)):
            self.bar.console.print(legend, markup=False, highlight=False)
        self.told = True
        width = max(WIDTH, self.console.width) if self.console.is_terminal else WIDTH
        self.bar.console.print(self.line(row, width), markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()


def choose(metrics=(), monitor: str = "val_loss", enabled: bool = True) -> Progress:
    """The bar where stderr is a terminal, a line per epoch where it is not, nothing when not enabled."""
    if not enabled:
        return Silent(metrics, monitor)
    from dltrain.console import err

    return Bar(metrics, monitor) if err().is_terminal else Lines(metrics, monitor)

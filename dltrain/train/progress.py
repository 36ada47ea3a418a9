"""Progress: a live Rich bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import math
import sys
from typing import Protocol


class Progress(Protocol):
    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int) -> None: ...
    def advance(self, batches: int) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def close(self) -> None: ...


def format_row(row: dict, keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = row.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {_number(value)}")
    return "  ".join(parts)


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.6g}"


class Silent:
    def start_epoch(self, epoch, epochs, batches, done) -> None:
        pass

    def advance(self, batches) -> None:
        pass

    def end_epoch(self, row) -> None:
        pass

    def close(self) -> None:
        pass


class Lines(Silent):
    """One line per epoch, for logs of batch jobs."""

    def __init__(self, keys: list[str]):
        self.keys = keys

    def start_epoch(self, epoch, epochs, batches, done) -> None:
        self.epochs = epochs

    def end_epoch(self, row) -> None:
        from dltrain.console import note

        width = len(str(self.epochs))
        note(f"epoch {row['epoch']:>{width}}/{self.epochs}  {format_row(row, self.keys)}  ({row['seconds']:.1f}s)")


class Bar(Silent):
    """A live bar of the batches of the epoch, and a line per finished epoch above it."""

    def __init__(self, keys: list[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        from dltrain.console import err

        self.keys = keys
        self.bar = RichProgress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        )
        self.bar.start()
        self.task = None
        self.pending = 0
        self.stride = 1

    def start_epoch(self, epoch, epochs, batches, done) -> None:
        self.epochs = epochs
        self.stride = max(1, batches // 100)  # a hundred redraws an epoch: cheap beside the batches
        label = f"{epoch}/{epochs}"
        if self.task is None:
            self.task = self.bar.add_task("", total=batches, completed=done, epoch=label)
        else:
            self.bar.reset(self.task, total=batches, completed=done, epoch=label)

    def advance(self, batches) -> None:
        self.pending += batches
        if self.pending >= self.stride:
            self.bar.update(self.task, advance=self.pending)
            self.pending = 0

    def end_epoch(self, row) -> None:
        self.pending = 0
        width = len(str(self.epochs))
        self.bar.console.print(
            f"epoch {row['epoch']:>{width}}/{self.epochs}  {format_row(row, self.keys)}  ({row['seconds']:.1f}s)",
            markup=False,
        )

    def close(self) -> None:
        self.bar.stop()


def choose(keys: list[str], enabled: bool = True) -> Progress:
    if not enabled:
        return Silent()
    return Bar(keys) if sys.stderr.isatty() else Lines(keys)

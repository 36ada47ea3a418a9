"""The run directory and checkpoints: write (atomically), find, load (tensors and plain values only)."""

from __future__ import annotations

import csv
import io
import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from dltrain.errors import CheckpointError, UsageError, WriteError
from dltrain.files import write_atomic, write_text

FORMAT = "dltrain-checkpoint"
FORMAT_VERSION = 1


def new_run_dir(out_dir: str | Path, name: str) -> Path:
    """`out_dir/name`, or `name-2`, `name-3`, ... when taken; created here, so two runs never share one."""
    base = Path(out_dir)
    if base.exists() and not base.is_dir():
        raise UsageError(f"train.out_dir {base}: a file, not a folder; runs go in a folder")
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100_000):
        path = base / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise CheckpointError(f"{base}: too many runs named {name}")


def save_checkpoint(state: dict, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


class RunDir:
    """The files of one run. It is the trainer's `Sink`: metrics rows and checkpoints go here."""

    def __init__(self, path: Path, static: dict, tensorboard: bool = False):
        self.path = Path(path)
        self.static = static  # what every checkpoint holds besides the trainer's state
        self.history: list[dict] = []
        self.board = _tensorboard(self.path) if tensorboard else None

    def start(self, history: list[dict]) -> None:
        """metrics.csv as the checkpoint knows it (on resume, rows written after it are dropped)."""
        for stale in self.path.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        self.history = [dict(r) for r in history]
        self._write_metrics()

    def epoch_row(self, row: dict) -> None:
        self.history.append(dict(row))
        self._write_metrics()
        if self.board is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, float):
                    self.board.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.board.flush()

    def _write_metrics(self) -> None:
        if not self.history:
            return
        columns = list(self.history[0])
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
        self._write(lambda path: write_text(path, out.getvalue()), self.path / "metrics.csv")

    def checkpoint(self, state: dict, best: bool) -> None:
        path = self.path / ("best.pt" if best else "last.pt")
        self._write(lambda target: save_checkpoint({**self.static, **state}, target), path)

    def _write(self, write, path: Path) -> None:
        try:
            write(path)
        except OSError as error:
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise WriteError(
                f"cannot write {path}: {error.strerror or error}. Nothing was half-written: {kept}. Free some "
                f"space (or make the folder writable), then continue with: dltrain fit --resume {self.path}"
            ) from None


def _tensorboard(path: Path):
    """A TensorBoard writer in the run directory, when the tensorboard package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from dltrain.console import warn

        warn("train.logger is tensorboard, but the tensorboard package is not installed (pip install tensorboard): metrics go to metrics.csv only")
        return None
    return SummaryWriter(str(path / "tensorboard"))


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def checkpoint_path(run_or_checkpoint: str | Path, which: str = "best.pt") -> Path:
    """A run directory's `which` checkpoint, or the checkpoint file itself."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        candidate = path / which
        if not candidate.is_file():
            other = "last.pt" if which == "best.pt" else "best.pt"
            if which == "best.pt" and (path / other).is_file():
                return path / other  # a run stopped before its first validation
            raise CheckpointError(f"{path}: no {which} in this folder; is it a dltrain run directory?")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint file")
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch's messages carry terminal colours


def load_checkpoint(run_or_checkpoint: str | Path, which: str = "best.pt") -> dict:
    """Load a checkpoint with `weights_only=True`: it can never run code. Anything else is refused."""
    path = checkpoint_path(run_or_checkpoint, which)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain values, so it is not a "
            f"dltrain checkpoint and loading it could run code ({_ANSI.sub('', str(error)).splitlines()[0][:200]})"
        ) from None
    except Exception:  # torch.load fails in many ways on a file that is not one of its own (IndexError on a CSV)
        raise CheckpointError(
            f"{path}: not a readable checkpoint: it is truncated, or not a file that torch.save wrote. "
            "Give a run directory or its best.pt / last.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dltrain checkpoint (it has no '{FORMAT}' marker)")
    version = state.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not a dltrain checkpoint (its format_version is {version!r}, not a number)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer dltrain (checkpoint format {version}; this dltrain {dltrain_version()} reads "
            f"format {FORMAT_VERSION} and older); upgrade dltrain to load it"
        )
    missing = [key for key in ("model", "config", "encoders") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: a damaged dltrain checkpoint: it has no {', '.join(missing)}")
    return state


def dltrain_version() -> str:
    import dltrain

    return getattr(dltrain, "__version__", "?")


def run_dir_of(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent

"""The run directory: chosen (never one that exists), locked by the one process that writes it,
written as training goes (the checkpoints, then metrics.csv, atomically), and removed again when a
fit fails before its first checkpoint."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dltrain import checkpoint
from dltrain.config.yaml import dump_yaml
from dltrain.data.sources import redact_secrets
from dltrain.errors import CheckpointError, UsageError, WriteError
from dltrain.files import sync_files, write_json, write_text

SYNC_EVERY = 30.0  # seconds: how much of a run a power cut can cost at most (README: "What is on the disk")


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


def make_run_dir(out: str | Path | None, out_dir: str | Path, name: str) -> Path:
    """`--out DIR` (a new or empty folder), or a new folder for `name` under `out_dir`."""
    if out is None:
        return new_run_dir(out_dir, name)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path}: a file, not a folder; give a new folder for the run")
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"--out {path}: the folder exists and is not empty; dltrain never writes over a run")
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_if_unused(path: Path, keep_folder: bool) -> bool:
    """A run that failed before its first checkpoint leaves nothing behind (the next run keeps its
    name). True when it was removed (or, for a folder the user named, emptied)."""
    if path.is_dir() and {p.name for p in path.iterdir()} <= {"config.yaml", "data.json", LOCK, "mlflow.json"}:
        for name in ("config.yaml", "data.json", LOCK, "mlflow.json"):
            (path / name).unlink(missing_ok=True)
        if not keep_folder:
            path.rmdir()
        return True
    return False


LOCK = ".lock"  # in the run directory: who writes it now (pid, host), locked with flock while they do


class RunLock:
    """The exclusive right to write one run directory, held by one process from start to end of its fit.

    Two `fit --resume` of one run would each write checkpoints and metrics.csv, and the slower one
    would silently throw the other's epochs away. The lock is flock's (released by the kernel when
    the process ends, even after kill -9); the file stays and names its last holder.
    """

    def __init__(self, run: Path):
        self.run = Path(run)
        self.path = self.run / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by programs fit starts
        except OSError as error:
            raise WriteError(f"cannot write {self.path}: {error.strerror or error}; a run is continued where dltrain can write its folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(
                f"{self.run} is being written by another dltrain process ({holder}). Two processes writing one "
                "run would throw one's epochs away, so this one did not start: wait for that one to finish, or "
                f"stop it{_kill_hint(holder)} and run this command again"
            ) from None
        except OSError as error:  # a file system without flock
            os.close(fd)
            raise WriteError(f"cannot lock {self.path}: {error.strerror or error}; give a run directory on a local disk") from None
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command()}
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)  # nobody holds it now
            except OSError:
                pass
            os.close(self.fd)  # and with it the lock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(run: Path) -> RunLock:
    """Lock `run` for this process, or raise UsageError (exit 2) naming the process that writes it."""
    return RunLock(run).acquire()


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says ("pid 123 on host, since ..., `dltrain fit ...`")."""
    for _ in range(20):  # the holder writes its name just after it took the lock
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and "pid" in data:
            return f"pid {data['pid']} on {data.get('host', '?')}, since {data.get('since', '?')}: {data.get('command', '')}".rstrip(": ")
        time.sleep(0.05)
    return "a process that has not written its pid yet"


def _command() -> str:
    """This process's command line, as the user typed it (`dltrain fit ...`, not the path of __main__.py)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return shlex.join(["dltrain" if program == "__main__.py" else program, *sys.argv[1:]])


def _kill_hint(holder: str) -> str:
    if holder.startswith("pid ") and f" on {socket.gethostname()}," in holder:
        return f" (kill {holder.split()[1]}: it saves last.pt first)"
    return ""


class RunDir:
    """The files of one run. It is the trainer's `Sink`: metrics rows and checkpoints go here."""

    def __init__(self, path: Path, recipe: dict, tensorboard: bool = False, tracker=None):
        self.path = Path(path)
        # what every checkpoint holds besides the trainer's state (Recipe.to_dict); a password in a
        # database url is never written, here or in config.yaml and data.json (data/sources.py)
        self.recipe = {**recipe, "config": redact_secrets(recipe["config"]), "data": redact_secrets(recipe["data"])}
        self.history: list[dict] = []
        self.board = _tensorboard(self.path) if tensorboard else None
        self.tracker = tracker  # train.logger: mlflow (dltrain.tracking), made on rank 0 alone
        # Every file is renamed into place whole (a killed process never leaves half of one); the
        # epoch's files are fsynced every SYNC_EVERY seconds and when training ends, not per epoch.
        self.unsynced: set[Path] = set()
        self.synced_at = time.monotonic()

    def record(self) -> None:
        """config.yaml (the config as run) and data.json (where the data came from, rows per split), fsynced."""
        self._write(lambda path: write_text(path, dump_yaml(self.recipe["config"])), self.path / "config.yaml")
        self._write(lambda path: write_json(path, self.recipe["data"]), self.path / "data.json")

    def start(self, history: list[dict]) -> None:
        """metrics.csv as the checkpoint knows it (on resume, rows written after it are dropped)."""
        for stale in self.path.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        self.history = [dict(r) for r in history]
        self._write_metrics()
        if self.tracker is not None:  # a new MLflow run, or on --resume the one mlflow.json names
            self.tracker.start(self.recipe["config"], self.recipe["data"], self.history)

    def epoch_row(self, row: dict) -> None:
        self.history.append(dict(row))
        self._write_metrics()
        if self.board is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, float):
                    self.board.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.board.flush()
        if self.tracker is not None:
            self.tracker.epoch(row)

    def _write_metrics(self) -> None:
        if not self.history:
            return
        columns = list(self.history[0])
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
        path = self.path / "metrics.csv"
        self._write(lambda target: write_text(target, out.getvalue(), sync=False), path)
        self.unsynced.add(path)

    def checkpoint(self, state: dict, names: tuple[str, ...]) -> None:
        """The state in each of `names` (last.pt, best.pt), serialized once; fsynced every SYNC_EVERY seconds.

        last.pt goes first: when the disk fills after it, the run resumes from this very state.
        """
        data = checkpoint.serialize(self.recipe, state)
        for name in sorted(names, key=lambda n: n != "last.pt"):
            path = self.path / name
            self._write(lambda target: checkpoint.write(target, data, sync=False), path)
            self.unsynced.add(path)
        if time.monotonic() - self.synced_at >= SYNC_EVERY:
            self.close()

    def close(self) -> None:
        """Make what was written durable: fsync the files written since the last time, and the folder."""
        try:
            sync_files(sorted(self.unsynced))
        except OSError:
            pass  # a disk that cannot sync now said so when it was written to
        self.unsynced.clear()
        self.synced_at = time.monotonic()

    def finish(self, status: str = "FINISHED") -> None:
        """Training ended (FINISHED; KILLED by a signal, after last.pt; FAILED): the run's files to MLflow."""
        if self.tracker is not None:
            self.tracker.finish(status)

    def _write(self, write, path: Path) -> None:
        try:
            write(path)
        except OSError as error:
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            if (self.path / "last.pt").is_file():
                then = f"continue with: dltrain fit --resume {self.path}"
            else:
                then = "run the same dltrain fit again: no epoch was saved yet, so there is nothing to resume"
            raise WriteError(
                f"cannot write {path}: {error.strerror or error}. Nothing was half-written: {kept}. Free some "
                f"space (or make the folder writable), then {then}"
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

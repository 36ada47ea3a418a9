"""The errors a user can cause. The CLI alone prints them (exit 2, no traceback)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch's messages carry terminal colours


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type's name), for a one-paragraph error.

    Libraries (torch, pandas, PIL, database drivers) raise with long multi-line texts; the first
    line says what went wrong.
    """
    lines = _ANSI.sub("", str(error)).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


class DltrainError(Exception):
    """A problem with what the user gave: a config, a data file, a checkpoint, a command line.

    `key` is the config key the problem belongs to, when there is one (("data", "target")), so
    that whoever holds the config can cite its file and line.
    """

    exit_code = 2

    def __init__(self, message: str, key: tuple = ()):
        super().__init__(message)
        self.key = key


class UsageError(DltrainError):
    """A bad command line."""


class DataError(DltrainError):
    """A data file or table that cannot be used as the config asks."""


class CheckpointError(DltrainError):
    """A checkpoint or run directory that cannot be loaded."""


class TrainingError(DltrainError):
    """Training could not go on (a loss that is not finite); the run keeps its last good state."""

    exit_code = 1


class WriteError(DltrainError):
    """A file of the run could not be written (a full disk, a folder that is not writable)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config: where (file:line, key path) and what."""

    where: str  # "configs/iris.yaml:12" or "command line"
    key: str  # dotted key path, "" for the whole file
    message: str

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.where}: {key}{self.message}"


class ConfigError(DltrainError):
    """Every problem found in one config, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        head = "1 problem in the config:" if count == 1 else f"{count} problems in the config:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))

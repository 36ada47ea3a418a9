"""Where dltrain talks to people: results to stdout, progress and warnings to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from rich.console import Console

_warned: set[str] = set()
_silent = False  # ranks of torchrun other than 0 say nothing: rank 0 speaks for all
_notes = True  # off while a tuner's trials run: it says one line per trial instead
_collected: list[str] | None = None  # while `collecting`, warnings are kept here instead of printed


# Rich wraps at 80 columns when output is not a terminal: logs and pipes get room for the tables.
_PIPE_WIDTH = 140


@cache
def out() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    return console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=_PIPE_WIDTH)


@cache
def err() -> Console:
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    return console if console.is_terminal else Console(stderr=True, highlight=False, soft_wrap=True, width=_PIPE_WIDTH)


def silence() -> None:
    global _silent
    _silent = True


def warn(message: str, key: object = None) -> None:
    """Print a warning once per process, however often it is raised.

    `key` says when two messages are the same warning (the same column's problem found again in
    another split, with other examples): by default the message itself.
    """
    if _collected is not None:  # a server's request: its warnings go back with its answer
        _collected.append(message)
        return
    key = message if key is None else key
    if key in _warned or _silent:
        return
    _warned.add(key)
    err().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def note(message: str) -> None:
    if not _silent and _notes:
        err().print(message, markup=False)


@contextmanager
def without_notes() -> Iterator[None]:
    """Notes unsaid inside (warnings still said, once each)."""
    global _notes
    before, _notes = _notes, False
    try:
        yield
    finally:
        _notes = before


@contextmanager
def collecting() -> Iterator[list[str]]:
    """Warnings inside go to the list given (each one, unprinted): a server answers with them.
    One thread at a time (the server encodes requests on one thread)."""
    global _collected
    before, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = before

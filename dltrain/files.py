"""Files written so that a crash never leaves half of one: a temporary file, flushed, then renamed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_atomic(path: Path, data: bytes | Iterable[bytes], sync: bool = True) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`: never half a file.

    `data` is the bytes, or pieces of them (written one by one: a large file is never whole in memory).
    `sync`: wait until the bytes are on the disk before the rename (fsync), so that a power cut too
    leaves the old file or the new one. Without it the rename is as atomic for any process that is
    killed (the kernel holds the bytes), and a later `sync_files` makes it durable.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files are as shareable as any other
        with os.fdopen(fd, "wb") as handle:
            for piece in [data] if isinstance(data, bytes) else data:
                handle.write(piece)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_files(paths: Iterable[Path]) -> None:
    """fsync files written with `sync=False`, and the folders that hold them (the renames)."""
    folders = set()
    for path in paths:
        path = Path(path)
        if path.exists():
            _fsync(path, os.O_RDONLY)
            folders.add(path.parent)
    for folder in folders:
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)


def write_text(path: Path, text: str, sync: bool = True) -> None:
    write_atomic(path, text.encode("utf-8"), sync)


def write_json(path: Path, data: Any) -> None:
    """JSON, indented; tensors and arrays (row indices) as lists on one line, written in pieces."""
    write_atomic(path, (piece.encode() for piece in _json_pieces(data, 0)))


def _json_pieces(value: Any, depth: int) -> Iterator[str]:
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # a tensor or an array of numbers
        flat = value.reshape(-1)
        yield "["
        for start in range(0, len(flat), 100_000):
            yield ("," if start else "") + ",".join(map(str, flat[start : start + 100_000].tolist()))
        yield "]"
    elif isinstance(value, dict) and value:
        pad = "  " * (depth + 1)
        yield "{\n"
        for n, (key, item) in enumerate(value.items()):
            yield ("," if n else "") + ("\n" if n else "") + pad + json.dumps(str(key)) + ": "
            yield from _json_pieces(item, depth + 1)
        yield "\n" + "  " * depth + "}" + ("\n" if depth == 0 else "")
    else:
        yield json.dumps(value, allow_nan=True)

"""Files written so that a crash never leaves half of one: a temporary file, flushed, then renamed.

Two ways in. `write_atomic` writes the files of a run (the trainer's own folder); `write_output`
every file a command leaves where the user points it (predictions, exports, plots, reports,
evaluate's JSON, the schema). Both:

- write into a path that exists and is not a regular file (/dev/null, a FIFO, a terminal), never
  replace it; a folder is an error that names it;
- remove, beside the file they write, the temporaries that a killed writer left
  (`.NAME.HOST-PID-XXXXXXXX.tmp`): at once when that process is gone, after an hour in any case.

`write_output` also replaces an existing file only when dltrain wrote it: a format that can carry
a mark carries one (a PNG's text chunk, the report's first line, the schema's $id), the others are
listed in their folder's `.dltrain-outputs.json` (name, size, mtime and SHA-256); a file neither
marked nor listed (or changed since) is the user's, and the command refuses it with exit 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Union

from dltrain.errors import UsageError

REGISTRY = ".dltrain-outputs.json"  # in each folder that holds outputs: what dltrain wrote there
STALE_AFTER = 3600.0  # seconds since its last write after which any temporary of ours is abandoned

# The bytes, pieces of them, or a function that writes a file by name (torch.onnx.export and the like).
Data = Union[bytes, Iterable[bytes], Callable[[Path], None]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24]
# .NAME.HOST-PID-XXXXXXXX.tmp (written by this version), .NAME.XXXXXXXX.tmp (by earlier ones)
_TEMPORARY = re.compile(r"(?:(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-)?[a-z0-9_]{8}")


def write_atomic(path: Path, data: Data, sync: bool = True) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`: never half a file.

    `data` is the bytes, or pieces of them (written one by one: a large file is never whole in memory),
    or a function that writes the file whose path it is given.
    `sync`: wait until the bytes are on the disk before the rename (fsync), so that a power cut too
    leaves the old file or the new one. Without it the rename is as atomic for any process that is
    killed (the kernel holds the bytes), and a later `sync_files` makes it durable.
    A path that exists and is not a regular file (a device, a FIFO) is written into, not replaced.
    """
    path = _target(Path(path), "")
    if _kind(path) == "other":
        _write_into(path, data)
        return
    _replace(path, data, sync)


def write_output(
    path: str | Path,
    data: Data,
    what: str = "--output",
    refusal: str = "dltrain did not write it",
    marked: Callable[[Path], bool] | None = None,
    sync: bool = True,
) -> Path:
    """Write a command's output file by the rules of the module's docstring; returns the path written.

    `what` names the path in messages (`--output`; "" for the path alone); `refusal` says why an
    existing file is kept ("was not drawn by dltrain plot"); `marked` tells whether a file carries
    the mark of dltrain's files of its format (a PNG's text chunk): one that does needs no entry in
    the folder's list, so it stays dltrain's wherever it is copied.
    """
    path = Path(path)
    target = check_output(path, what, refusal, marked)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{_named(what, path)}: {_file_above(target.parent)} is a file, not a folder; give a path in a folder") from None
    with _locked(target.parent):
        check_output(path, what, refusal, marked)  # again: another process may have written it since
        if _kind(target) == "other":
            _write_into(target, data)
            return path
        digest = _replace(target, data, sync)
        # a format that carries its mark needs no entry in the list (and leaves no list in the folder)
        _record(target, digest, sync, listed=marked is None or not _safely(marked, target))
    return path


def check_output(
    path: str | Path, what: str = "--output", refusal: str = "dltrain did not write it", marked: Callable[[Path], bool] | None = None
) -> Path:
    """Raise a UsageError (exit 2) unless `write_output` may write `path`: a new file, an earlier
    output of dltrain, or something that is not a regular file; returns the path to write (a
    symbolic link's target). Commands call it before their work, so that they refuse at once."""
    path = Path(path)
    target = _target(path, what)
    if _kind(target) == "file" and not written_by_dltrain(target) and not (marked is not None and _safely(marked, target)):
        raise UsageError(
            f"{_named(what, path)}: the file exists and {refusal}; dltrain never writes over other files. "
            "Remove it first, or give another name"
        )
    return target


def written_by_dltrain(path: str | Path) -> bool:
    """Whether the file at `path` is an output dltrain wrote there, unchanged since."""
    path = Path(path)
    entry = _registry(path.parent).get(path.name)
    try:
        found = path.stat()
        if not isinstance(entry, dict) or found.st_size != entry.get("size"):
            return False
        if found.st_mtime_ns == entry.get("mtime_ns"):
            return True
        return _sha256(path) == entry.get("sha256")  # copied (cp -r, rsync): other times, the same bytes
    except OSError:
        return False


# ----- pieces


def _safely(marked: Callable[[Path], bool], path: Path) -> bool:
    try:
        return bool(marked(path))
    except Exception:  # a file that cannot be read as that format carries no mark
        return False


def _kind(path: Path) -> str | None:
    """None (nothing there), 'file', 'folder', or 'other' (a device, a FIFO, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def _target(path: Path, what: str) -> Path:
    """The path to write: a symbolic link's target (the link stays); a folder is an error."""
    if _kind(path) == "folder":
        raise UsageError(f"{_named(what, path)}: a folder, not a file; give a file name such as {path / 'output'}")
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _named(what: str, path: Path) -> str:
    return f"{what} {path}" if what else str(path)


def _file_above(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _write_into(path: Path, data: Data) -> None:
    """Open `path` for writing and write the bytes to it: what `> path` does in a shell."""
    if callable(data):  # the library writes a file by name: write it beside, then copy its bytes
        with _temporary(Path(tempfile.gettempdir()) / path.name) as (handle, tmp):
            handle.close()
            data(tmp)
            with open(path, "wb") as out, open(tmp, "rb") as written:
                while piece := written.read(1 << 20):
                    out.write(piece)
        return
    with open(path, "wb") as out:
        for piece in [data] if isinstance(data, bytes) else data:
            out.write(piece)


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[tuple[Any, Path]]:
    """A new temporary file beside `path` (open for writing), removed unless renamed."""
    _remove_stale(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}-", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files are as shareable as any other
        with os.fdopen(fd, "wb") as handle:
            yield handle, tmp
    finally:
        tmp.unlink(missing_ok=True)  # gone already when renamed


def _replace(path: Path, data: Data, sync: bool) -> str:
    """The temporary file, written, then renamed over `path`; returns the bytes' SHA-256."""
    with _temporary(path) as (handle, tmp):
        if callable(data):
            handle.close()
            data(tmp)
            if sync:
                _fsync(tmp, os.O_RDONLY)
            sha256 = _sha256(tmp)
        else:
            digest = hashlib.sha256()
            for piece in [data] if isinstance(data, bytes) else data:
                handle.write(piece)
                digest.update(piece)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
            handle.close()
            sha256 = digest.hexdigest()
        os.replace(tmp, path)
    return sha256


def _remove_stale(path: Path) -> None:
    """Temporaries of `path` that their writer abandoned: its process is gone, or an hour passed."""
    start = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(start) and name.endswith(".tmp")):
            continue
        found = _TEMPORARY.fullmatch(name[len(start) : -len(".tmp")])
        if found is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = int(found["pid"]) if found["pid"] else None
        gone = pid is not None and found["host"] == _HOST and pid != os.getpid() and not _alive(pid)
        if gone or age > STALE_AFTER:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, and is someone else's
        return True
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _registry(folder: Path) -> dict:
    """The outputs dltrain wrote in `folder`, by name; empty when there is no list (or not a readable one)."""
    try:
        files = json.loads((folder / REGISTRY).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _record(path: Path, sha256: str, sync: bool, listed: bool = True) -> None:
    """Add `path` (just written) to its folder's list, or take it out (`listed` false); files that
    are gone leave the list too."""
    folder = path.parent
    known = _registry(folder)
    if not listed and path.name not in known:
        return
    files = {name: entry for name, entry in known.items() if name != path.name and (folder / name).is_file()}
    if listed:
        found = path.stat()
        files[path.name] = {"size": found.st_size, "mtime_ns": found.st_mtime_ns, "sha256": sha256}
    text = json.dumps({"written_by": "dltrain", "files": files}, indent=1, sort_keys=True) + "\n"
    _replace(folder / REGISTRY, text.encode(), sync)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """The folder locked (flock) against other dltrain processes writing outputs in it, so that
    neither loses the other's entry in the list; a file system that cannot lock goes unlocked."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with it


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
    write_atomic(path, json_pieces(data))


def json_pieces(data: Any) -> Iterator[bytes]:
    """`write_json`'s bytes, piece by piece (for `write_output`)."""
    return (piece.encode() for piece in _json_pieces(data, 0))


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

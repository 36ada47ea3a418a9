"""What the file-based column types share: folders of class subfolders, decoding in worker
processes, the decode cache on disk, and the handling of files that cannot be read.

A decoder is a top-level function `decode(path, options) -> np.ndarray | str` (the array of a
fixed shape, or why the file cannot be read); `decode_files` runs it over many files once, in
parallel, and caches the result under a key made of the files (path, size, modification time) and
the options, so a second run on the same files starts without decoding.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import torch

from dltrain.console import err, note, warn
from dltrain.errors import DataError
from dltrain.files import write_atomic

PARALLEL_FROM = 256  # fewer files decode faster in this process than in workers
CHUNK = 256
Decoder = Callable[["str | BinaryIO", dict], "np.ndarray | str"]  # a path, or the contents of a file sent to a server


EMPTY_CELL = "<empty cell>"  # a row without a path: unreadable like a missing file, and said so


def path_list(series: pd.Series) -> list[str]:
    """The paths of a column as text; an empty cell becomes a path no file has, named in messages."""
    return [value if isinstance(value, str) and value.strip() else EMPTY_CELL for value in series.tolist()]


def reason(error: Exception) -> str:
    if isinstance(error, EOFError):
        return "the file ends early (truncated)"
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ----- folders


def hidden(path: Path, root: Path) -> bool:
    """Left alone in a data folder: names starting with a dot (.DS_Store, ._photo.jpg, .ipynb_checkpoints) and __MACOSX."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts[-1:]
    return any(_hidden_name(part) for part in parts)


def _hidden_name(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


@dataclass(frozen=True)
class ClassFolders:
    """A folder of class subfolders, listed: what each class folder holds, and the files beside them.

    Entries are `os.DirEntry`s: their name, path and is_file/is_dir come from the listing itself,
    without a stat per file. Hidden names are left out at every depth.
    """

    folder: Path
    children: dict[str, list[os.DirEntry]]  # class -> the entries directly in its folder, sorted by name
    nested: dict[str, list[os.DirEntry]]  # class -> every entry below its folder, at any depth
    loose: list[os.DirEntry]  # the files directly in the folder


_LISTED: dict[str, tuple[tuple, ClassFolders]] = {}  # the last few folders listed (a source's, or one per split)
_KEEP_LISTED = 4
_RACY_NS = 2_000_000_000  # the coarsest modification times kept (FAT: 2 s)


def class_folders(folder: Path) -> ClassFolders:
    """The listing of `folder`, made once: checking a source and reading it share it while no folder
    in it changed (a folder's modification time changes when an entry is added, removed or renamed)."""
    folder = Path(folder)
    key = str(folder.resolve())
    known = _LISTED.get(key)
    if known is not None and _unchanged(known[0]):
        return known[1]
    started = time.time_ns()
    stamps = [(key, os.stat(key).st_mtime_ns)]
    children, nested, loose = {}, {}, []
    with os.scandir(key) as top:
        entries = sorted((e for e in top if not _hidden_name(e.name)), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            children[entry.name], nested[entry.name] = _walk(entry.path, stamps)
        elif entry.is_file():
            loose.append(entry)
    listing = ClassFolders(folder, children, nested, loose)
    _LISTED.pop(key, None)
    if all(mtime < started - _RACY_NS for _, mtime in stamps):  # a folder changed just before its listing could change
        _LISTED[key] = (tuple(stamps), listing)  # again within the file system's time resolution unseen (as git's racy index)
    while len(_LISTED) > _KEEP_LISTED:  # the oldest goes: a listing of a million files is worth keeping only while in use
        del _LISTED[next(iter(_LISTED))]
    return listing


def _walk(path: str, stamps: list) -> tuple[list[os.DirEntry], list[os.DirEntry]]:
    stamps.append((path, os.stat(path).st_mtime_ns))
    with os.scandir(path) as found:
        children = sorted((e for e in found if not _hidden_name(e.name)), key=lambda e: e.name)
    nested = list(children)
    for entry in children:
        if entry.is_dir(follow_symlinks=False):  # as rglob: a link to a folder is not walked into (no loops)
            nested += _walk(entry.path, stamps)[1]
    return children, nested


def _unchanged(stamps: tuple) -> bool:
    try:
        return all(os.stat(path).st_mtime_ns == mtime for path, mtime in stamps)
    except OSError:
        return False


def folder_table(folder: Path, is_item: Callable[[Path], bool], what: str, extensions: tuple[str, ...], recursive: bool = True) -> pd.DataFrame:
    """A folder with one subfolder per class -> columns `path` (absolute) and `label`.

    `is_item` takes a Path or an os.DirEntry (it asks only for name, is_file and is_dir).
    """
    listing = class_folders(folder)
    folder = Path(os.path.abspath(folder))
    rows, empty = [], []
    for name, entries in listing.children.items():
        found = listing.nested[name] if recursive else entries
        items = sorted(e.path for e in found if is_item(e))
        if not items:
            empty.append(name)
        rows += [(path, name) for path in items]
    loose = [e for e in listing.loose if is_item(e)]
    kinds = ", ".join(e.lstrip(".") for e in extensions)
    if not rows:
        if loose:
            raise DataError(
                f"{folder}: its {len(loose)} {what}s lie directly in it; for training, put them in one "
                f"subfolder per class ({folder}/cat/1..., {folder}/dog/2...)"
            )
        raise DataError(f"{folder}: no {what}s ({kinds}) in it or its subfolders")
    if empty:
        raise DataError(f"{folder}: class folder(s) {', '.join(empty)} hold no {what}s; remove them or add {what}s ({kinds})")
    if loose:
        warn(f"{folder}: {len(loose)} {what}(s) lie outside the class subfolders and are left out")
    return pd.DataFrame(rows, columns=["path", "label"])


def list_items(pattern: str | Path, is_item: Callable[[Path], bool], recursive: bool = True) -> list[Path]:
    """One item, a folder (searched recursively) or a glob pattern -> items, sorted."""
    path = Path(pattern)
    if is_item(path):
        return [path.resolve()]
    if path.is_dir():
        children, nested = _walk(str(path.resolve()), [])
        return sorted(Path(e.path) for e in (nested if recursive else children) if is_item(e))
    return sorted({p.resolve() for p in _glob(str(pattern)) if is_item(p)})


def _glob(pattern: str) -> Iterator[Path]:
    """The paths a glob pattern names, `**` through folders but never into a link to one (as a
    folder is walked: a link that leads back up is no endless loop), each file once."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = "/".join(parts[fixed:])
    if not rest:
        return iter([root] if root.exists() else [])
    return root.glob(rest)


# ----- decoding


def parallel_map(function: Callable, chunks: list, total: int, label: str) -> list:
    """`function` over chunks: in worker processes for many files, with a bar on a terminal."""
    workers = min(os.cpu_count() or 1, len(chunks))
    if total < PARALLEL_FROM or workers < 2:
        return [function(c) for c in chunks]
    # fork starts workers in milliseconds and they need only the decoders; elsewhere spawn
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    results = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        if not err().is_terminal:
            return list(pool.map(function, chunks))
        from rich.progress import Progress

        with Progress(console=err(), transient=True) as bar:
            task = bar.add_task(label, total=total)
            for result, chunk in zip(pool.map(function, chunks), chunks):
                results.append(result)
                bar.advance(task, len(chunk[1]))
    return results


def _decode_chunk(args: tuple) -> tuple[np.ndarray, list[tuple[int, str]]]:
    decode, paths, options, shape, dtype = args
    out = np.zeros((len(paths), *shape), dtype=dtype)
    failed = []
    for i, path in enumerate(paths):
        result = decode(path, options)
        if isinstance(result, str):
            failed.append((i, result))
        else:
            out[i] = result
    return out, failed


def map_files(function: Callable[[str, dict], object], paths: list[str], options: dict, label: str, cache: str | None = None) -> list:
    """`function(path, options)` for every path, in worker processes when there are many.

    With `cache` (a name), the results (tuples of numbers, or why a file cannot be read) are kept in
    the cache folder under the files' key, as decoded files are: a second run reads no file for them.
    """
    key = _cache_key(cache, paths, options) if cache else None
    cache_file = cache_folder() / "probes" / f"{cache}-{key}.pt" if key else None
    if cache_file is not None and cache_file.is_file():
        try:
            return _unpack_results(torch.load(cache_file, weights_only=True))
        except Exception:  # a damaged cache file: read the files again
            pass
    chunks = [(function, paths[i : i + CHUNK], options) for i in range(0, len(paths), CHUNK)]
    results = [r for chunk in parallel_map(_apply_chunk, chunks, len(paths), label) for r in chunk]
    packed = _pack_results(results) if cache_file is not None else None
    if packed is not None:
        buffer = io.BytesIO()
        torch.save(packed, buffer)
        _keep(cache_file, buffer.getvalue(), sync=False)
    return results


def _pack_results(results: list) -> dict | None:
    """Tuples of numbers as one float64 tensor (which numbers were ints kept), failures by row; None when they do not fit."""
    good = [r for r in results if not isinstance(r, str)]
    if not good or any(not isinstance(r, tuple) or len(r) != len(good[0]) for r in good):
        return None
    ints = [isinstance(v, int) for v in good[0]]
    if any([isinstance(v, int) for v in r] != ints or not all(isinstance(v, (int, float)) for v in r) for r in good):
        return None
    values = torch.tensor([[0.0] * len(ints) if isinstance(r, str) else list(r) for r in results], dtype=torch.float64)
    failed = [[i, r] for i, r in enumerate(results) if isinstance(r, str)]
    return {"values": values, "ints": ints, "failed": failed}


def _unpack_results(packed: dict) -> list:
    ints = packed["ints"]
    results: list = [tuple(int(v) if i else v for v, i in zip(row, ints)) for row in packed["values"].tolist()]
    for index, why in packed["failed"]:
        results[index] = why
    return results


def _apply_chunk(args: tuple) -> list:
    function, paths, options = args
    return [function(p, options) for p in paths]


@dataclass(frozen=True)
class Decoded:
    values: torch.Tensor  # (rows kept, *shape)
    kept: np.ndarray  # bool per input row
    failed: list[tuple[str, str]]  # (path, why)


def cache_folder() -> Path:
    return Path(os.environ.get("DLTRAIN_CACHE") or Path.home() / ".cache" / "dltrain")


def _cache_key(kind: str, paths: list[str], options: dict) -> str | None:
    digest = hashlib.sha256(json.dumps({"kind": kind, "options": options, "version": 1}, sort_keys=True).encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            return None  # a missing file: decode to say which
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def decode_files(
    kind: str, paths: list[str], decode: Decoder, options: dict, shape: tuple[int, ...], dtype, use_cache: bool = True
) -> Decoded:
    """Decode every file once (or load the result from the cache); failures are returned, not raised."""
    key = _cache_key(kind, paths, options) if use_cache else None
    cache_file = cache_folder() / kind / f"{key}.pt" if key else None
    if cache_file is not None and cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            values, kept = cached["values"], cached["kept"].numpy()
            if tuple(values.shape[1:]) == tuple(shape) and len(kept) == len(paths) and len(values) == int(kept.sum()) and values.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype:
                note(f"{kind}: {len(paths)} loaded from the cache ({cache_file})")
                return Decoded(values, kept, [tuple(f) for f in cached["failed"]])
        except Exception:  # a damaged cache file is decoded again and replaced
            pass
    start = time.perf_counter()
    chunks = [(decode, paths[i : i + CHUNK], options, shape, dtype) for i in range(0, len(paths), CHUNK)]
    results = parallel_map(_decode_chunk, chunks, len(paths), f"decoding {kind}")
    kept = np.ones(len(paths), dtype=bool)
    failed = []
    for n, (_, chunk_failed) in enumerate(results):
        for i, why in chunk_failed:
            kept[n * CHUNK + i] = False
            failed.append((paths[n * CHUNK + i], why))
    values = np.concatenate([r[0] for r in results]) if results else np.zeros((0, *shape), dtype)
    decoded = Decoded(torch.from_numpy(values[kept]), kept, failed)
    shown = "x".join(map(str, shape))
    note(f"{kind}: {len(paths)} decoded in {time.perf_counter() - start:.1f} s ({shown} each)")
    if cache_file is not None:
        buffer = io.BytesIO()
        torch.save({"values": decoded.values, "kept": torch.from_numpy(kept), "failed": [list(f) for f in failed]}, buffer)
        _keep(cache_file, buffer.getvalue())
    return decoded


def _keep(cache_file: Path, data: bytes, sync: bool = True) -> None:
    """Into the cache, if it can be written: a full or read-only cache folder is a warning, and the
    work goes on without it."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file, data, sync=sync)
    except OSError as error:
        warn(f"the cache folder {cache_folder()} cannot be written ({error.strerror or error}); going on without keeping {cache_file.name} (set DLTRAIN_CACHE to another folder, or data.cache: false)")


def check_failures(failed: list[tuple[str, str]], on_error: str, what: str) -> None:
    """Unreadable files: a DataError naming them, or with on_error skip a warning that counts them."""
    if not failed:
        return
    if on_error == "raise":
        shown = "; ".join(f"{path}: {why}" for path, why in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise DataError(
            f"{len(failed)} {what}(s) cannot be read: {shown}{more}. Fix or remove them, or leave them out with a "
            "warning: data.on_error: skip in the config for fit and evaluate, --on-error skip for predict"
        )
    shown = "; ".join(f"{path} ({why})" for path, why in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    warn(f"{len(failed)} {what}(s) could not be read and were skipped (data.on_error: skip): {shown}{more}")


class ChannelStatistics:
    """Per-channel mean and std, accumulated over batches of uint8 (or float) data in units of `scale`."""

    def __init__(self, channels: int, channel_dim: int = 1, scale: float = 255.0):
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.squares = torch.zeros(channels, dtype=torch.float64)
        self.count, self.channel_dim, self.scale = 0, channel_dim, scale

    def add(self, values: torch.Tensor) -> None:
        dims = tuple(d for d in range(values.dim()) if d != self.channel_dim)
        for chunk in values.split(1024):
            part = chunk.to(torch.float64).div_(self.scale)
            self.total += part.sum(dim=dims)
            self.squares += part.pow(2).sum(dim=dims)
            self.count += part.numel() // part.shape[self.channel_dim]

    def result(self) -> tuple[list[float], list[float]]:
        count = max(self.count, 1)
        mean = self.total / count
        std = (self.squares / count - mean.pow(2)).clamp_min(0).sqrt()
        return mean.tolist(), [s if s > 1e-6 else 1.0 for s in std.tolist()]


def channel_statistics(values: torch.Tensor, channel_dim: int = 1, scale: float = 255.0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (or float) data, in units of `scale`; std 1 where flat."""
    statistics = ChannelStatistics(values.shape[channel_dim], channel_dim, scale)
    statistics.add(values)
    return statistics.result()


class Normalize:
    """Stored batch -> floats in units of `scale` -> augmentations (training only) -> normalized per channel."""

    def __init__(self, mean: list[float], std: list[float], augmentations: list, dims: int, scale: float = 255.0):
        view = (1, len(mean)) + (1,) * (dims - 2)
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(view)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(view)
        self.augmentations, self.scale = augmentations, scale

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        x = x.to(torch.float32, copy=True)  # never change the stored data (a view for validation batches)
        if self.scale != 1.0:
            x = x.div_(self.scale)
        for augmentation in self.augmentations:
            x = augmentation(x, generator)
        return x.sub_(self.mean).div_(self.std)


class _Sent(io.BytesIO):
    """A sent file's contents, shown by the name it was sent with (in a decoder's message)."""

    def __init__(self, name: str, data: bytes):
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return repr(self.name)


class FileColumn:
    """What the file column types (image, audio, video) share: fitting on paths, decoding, statistics.

    A subclass names its `kind` (the cache's folder), `what` one file is called in messages, its
    `decoder`, the dtype it is stored in, and gives `decode_options`, `shape`, `statistics` and
    `use_statistics`.
    """

    kind: str = ""
    what: str = "file"
    decoder: Decoder
    storage: type = np.uint8

    # streaming fit: collect the training paths (small), then fit on them
    @staticmethod
    def fit_state() -> list:
        return []

    @staticmethod
    def fit_update(state: list, column: str, series: pd.Series, options: dict | None = None) -> None:
        state.extend(path_list(series))

    @classmethod
    def fit_finish(cls, column: str, state: list, options: dict, on_error: str = "raise", use_cache: bool = True):
        """`use_cache`: the files' headers may come from (and go to) the cache folder (data.cache)."""
        return cls.fit(column, pd.Series(state, dtype=object), options, on_error, use_cache)

    def encode(self, series: pd.Series, use_cache: bool = True, on_error: str = "raise") -> tuple[torch.Tensor, np.ndarray]:
        """The files of `series`, decoded (kept rows, *shape), and which rows were kept."""
        decoded = decode_files(self.kind, path_list(series), type(self).decoder, self.decode_options(), self.shape, self.storage, use_cache)
        check_failures(decoded.failed, on_error, self.what)
        return decoded.values, decoded.kept

    def encode_sent(self, files: list[tuple[str, bytes]], on_error: str = "raise") -> tuple[torch.Tensor, np.ndarray]:
        """Files sent rather than stored (a server's uploads: their names and contents), decoded
        from memory by the same decoder as stored files and never cached; as `encode`."""
        values, failed_at = _decode_chunk((type(self).decoder, [_Sent(name, data) for name, data in files], self.decode_options(), self.shape, self.storage))
        kept = np.ones(len(files), dtype=bool)
        if not failed_at:
            return torch.from_numpy(values), kept
        kept[[i for i, _ in failed_at]] = False
        check_failures([(files[i][0], why) for i, why in failed_at], on_error, self.what)
        return torch.from_numpy(values[kept]), kept

    def decode_one(self, path: str) -> np.ndarray | str:
        return type(self).decoder(path, self.decode_options())

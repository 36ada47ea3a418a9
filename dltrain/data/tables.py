"""The rows of a data section: one table from one source, or from one file per split, read whole
(`data.in_memory: true`) or chunk by chunk (data larger than memory).

Both kinds answer the same four questions, so preparing data is one path whichever is used:
the rows to infer column types from (`sample`), some columns of every row (`columns`), every row
in chunks indexed by its position in the whole table (`chunks`), and where each file's rows are
(`file_rows`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from dltrain.data.media import path_list
from dltrain.data.sources import Fingerprint, ResolvedSource, read_chunks, read_table
from dltrain.errors import DataError

CHUNK_ROWS = 65_536


def open_table(sources: dict[str, ResolvedSource], in_memory: bool) -> WholeTable | ChunkedTable:
    """`sources`: {"": the source}, or {"train": ..., "val": ..., "test": ...} files given per split."""
    return WholeTable.read(sources) if in_memory else ChunkedTable(sources)


def label_of(sources: dict[str, ResolvedSource]) -> str:
    """How messages name the data: the file (the train file when there is one per split), or the query."""
    return next(iter(sources.values())).label if "" in sources else sources["train"].label


class WholeTable:
    """Every row in memory, as one DataFrame: it is its own only chunk."""

    def __init__(self, frame: pd.DataFrame, label: str, file_rows: dict[str, np.ndarray] | None = None):
        self.frame, self.label, self._file_rows = frame, label, file_rows

    @classmethod
    def read(cls, sources: dict[str, ResolvedSource]) -> WholeTable:
        frames = {name: read_table(source) for name, source in sources.items()}
        label = label_of(sources)
        if "" in frames:
            return cls(frames[""], label)
        columns = list(frames["train"].columns)
        for name, frame in frames.items():
            if set(frame.columns) != set(columns):
                raise DataError(
                    f"{sources[name].label}: its columns ({', '.join(frame.columns)}) differ from the "
                    f"train file's ({', '.join(columns)})",
                    key=("data", "split", name),
                )
        starts = np.cumsum([0, *(len(f) for f in frames.values())])
        rows = {name: np.arange(starts[i], starts[i + 1]) for i, name in enumerate(frames)}
        return cls(pd.concat(list(frames.values()), ignore_index=True), label, rows)

    def sample(self) -> pd.DataFrame:
        return self.frame

    def columns(self, names: list[str]) -> pd.DataFrame:
        return self.frame[[n for n in names if n in self.frame.columns]]

    def chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        yield self.frame if columns is None else self.frame[columns]

    def rows(self, indices: np.ndarray) -> pd.DataFrame:
        return self.frame.iloc[indices]

    def file_rows(self) -> dict[str, np.ndarray] | None:
        return self._file_rows

    def __len__(self) -> int:
        return len(self.frame)


class ChunkedTable:
    """The table's files (one, or one per split), read one after the other in chunks as one table."""

    def __init__(self, sources: dict[str, ResolvedSource]):
        self.sources = sources
        self.label = label_of(sources)
        self._counts: list[int] | None = None  # rows of each file, once counted
        self._sample: pd.DataFrame | None = None

    def chunks(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pd.DataFrame]:
        offset = 0
        for source in self.sources.values():
            count = 0
            for chunk in read_chunks(source, rows or CHUNK_ROWS, columns):
                chunk.index = chunk.index + offset
                count += len(chunk)
                yield chunk
            offset += count

    def sample(self) -> pd.DataFrame:
        """The first chunk: column types are inferred from it."""
        if self._sample is None:
            chunks = read_chunks(next(iter(self.sources.values())), CHUNK_ROWS)
            try:
                self._sample = next(chunks)
            finally:
                chunks.close()
        return self._sample

    def columns(self, names: list[str]) -> pd.DataFrame:
        """These columns of every row; text as categories (a few bytes a row). Counts each file's rows."""
        names = [n for n in names if n in self.sample().columns]
        frames, counts = [], []
        for source in self.sources.values():
            count = 0
            for part in read_chunks(source, CHUNK_ROWS, names or None):
                count += len(part)
                frames.append(part[names].apply(lambda c: c if pd.api.types.is_numeric_dtype(c) else c.astype("category")))
            counts.append(count)
        self._counts = counts
        return pd.DataFrame({name: _concat([f[name] for f in frames]) for name in names}, index=pd.RangeIndex(sum(counts)))

    def file_rows(self) -> dict[str, np.ndarray] | None:
        if "" in self.sources:
            return None
        if self._counts is None:
            self.columns([])
        starts = np.cumsum([0, *self._counts])
        return {name: np.arange(starts[i], starts[i + 1]) for i, name in enumerate(self.sources)}


def fingerprint(table: WholeTable | ChunkedTable) -> Fingerprint:
    """A hash of every row's content, the same whether the table was read whole or in chunks."""
    hashing = None
    for chunk in table.chunks():
        hashing = hashing or Fingerprint(list(chunk.columns))
        hashing.add(chunk)
    return hashing


# ----- the content of the files a column names: a table of paths stays the same when the images
# are rewritten in place, so data.json also records a hash of the files' bytes, per split

_FILE_HASHES: dict[str, tuple[tuple, bytes]] = {}  # path -> ((inode, size, mtime_ns), digest), in this process
_KEEP_HASHES = 1_000_000
_RACY_NS = 2_000_000_000  # a file written this recently may change again unseen by its mtime (FAT: 2 s)
_UNREADABLE = b"\0unreadable"
_BLOCK = 1 << 20


def split_file_fingerprints(table: WholeTable | ChunkedTable, column: str, rows: dict[str, np.ndarray]) -> dict[str, str]:
    """A hash of the bytes of the files in `column`, for the rows of each split (in row order)."""
    paths = table.columns([column])[column]
    return {name: files_fingerprint(path_list(paths.iloc[np.sort(np.asarray(indices, dtype=np.int64))])) for name, indices in rows.items()}


def files_fingerprint(paths: list[str]) -> str:
    """A hash of each file's bytes in turn (every file of a folder of frames); a file that cannot be
    read counts as such, so it is the same while it stays unreadable."""
    digest = hashlib.sha256()
    if len(paths) < 64:
        found = map(_file_digest, paths)
    else:  # reading is most of the time; threads overlap it (hashlib lets go of the GIL on large blocks)
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            found = list(pool.map(_file_digest, paths, chunksize=64))
    for part in found:
        digest.update(part)
    return digest.hexdigest()[:32]


def _file_digest(path: str) -> bytes:
    try:
        if os.path.isdir(path):  # a clip as a folder of frames: its files by name
            inner = hashlib.blake2b(digest_size=16)
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                for name in sorted(names):
                    full = os.path.join(folder, name)
                    inner.update(os.path.relpath(full, path).encode("utf-8", "surrogateescape") + b"\0" + _file_digest(full))
            return inner.digest()
        stat = os.stat(path)
    except OSError:
        return _UNREADABLE
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    known = _FILE_HASHES.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    try:
        inner = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            buffer = bytearray(_BLOCK)
            view = memoryview(buffer)
            while count := handle.readinto(buffer):
                inner.update(view[:count])
    except OSError:
        return _UNREADABLE
    if stat.st_mtime_ns < time.time_ns() - _RACY_NS:
        if len(_FILE_HASHES) >= _KEEP_HASHES:
            _FILE_HASHES.clear()
        _FILE_HASHES[path] = (stamp, inner.digest())
    return inner.digest()


def _concat(parts: list[pd.Series]) -> pd.Series:
    if parts and isinstance(parts[0].dtype, pd.CategoricalDtype):
        return pd.Series(union_categoricals(parts), dtype="category")
    return pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype=float)

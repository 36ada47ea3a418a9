"""The rows of a data section: one table from one source, or from one file per split, read whole
(`data.in_memory: true`) or chunk by chunk (data larger than memory).

Both kinds answer the same four questions, so preparing data is one path whichever is used:
the rows to infer column types from (`sample`), some columns of every row (`columns`), every row
in chunks indexed by its position in the whole table (`chunks`), and where each file's rows are
(`file_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

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


def fingerprint(table: WholeTable | ChunkedTable) -> str:
    """A hash of every row's content, the same whether the table was read whole or in chunks."""
    hashing = None
    for chunk in table.chunks():
        hashing = hashing or Fingerprint(list(chunk.columns))
        hashing.add(chunk)
    return hashing.result()


def _concat(parts: list[pd.Series]) -> pd.Series:
    if parts and isinstance(parts[0].dtype, pd.CategoricalDtype):
        return pd.Series(union_categoricals(parts), dtype="category")
    return pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype=float)

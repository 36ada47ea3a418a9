"""Data larger than memory (`data.in_memory: false`): encoders fitted chunk by chunk, batches read from
disk every epoch.

Tables are read in chunks (Parquet row batches, CSV chunks), their rows shuffled within each chunk,
and encoded as they are read; image, sound and video files are decoded for each batch in
DataLoader worker processes. What stays in memory is the target column, the row indices of each
split and one chunk (or one batch of files) at a time, so memory stays flat as the data grows. The
encoders are the ones in-memory training fits, so results are the same up to shuffling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pandas.api.types import union_categoricals

from dltrain.config.schema import Data, Files
from dltrain.data.dataset import (
    ColumnReport,
    DataSchema,
    LabelsAndSplit,
    Prepared,
    Resolve,
    SplitData,
    _column_name,
    _inputs,
    _label,
    _schema,
)
from dltrain.data.encoders import ENCODERS
from dltrain.data.media import FileColumn, check_failures, path_list
from dltrain.data.sources import Fingerprint, ResolvedSource, read_chunks
from dltrain.data.split import SPLITS
from dltrain.train.losses import LossEntry

CHUNK_ROWS = 65_536


@dataclass
class Sources:
    """The table's files (one, or one per split), read one after the other as one table."""

    sources: list[ResolvedSource]

    def chunks(self, columns: list[str] | None = None, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        offset = 0
        for source in self.sources:
            count = 0
            for chunk in read_chunks(source, rows, columns):
                chunk.index = chunk.index + offset
                count += len(chunk)
                yield chunk
            offset += count

    def first(self) -> pd.DataFrame:
        chunks = read_chunks(self.sources[0], CHUNK_ROWS)
        try:
            return next(chunks)
        finally:
            chunks.close()

    def columns(self, names: list[str]) -> tuple[pd.DataFrame, list[int]]:
        """These columns of every row, and the rows of each file; text as categories (a few bytes a row)."""
        frames, counts = [], []
        for source in self.sources:
            count = 0
            for part in read_chunks(source, CHUNK_ROWS, names or None):
                count += len(part)
                frames.append(part.apply(lambda c: c if pd.api.types.is_numeric_dtype(c) else c.astype("category")))
            counts.append(count)
        table = pd.DataFrame(
            {name: _concat([f[name] for f in frames]) for name in frames[0].columns}
        )
        return table, counts


def prepare_stream(data: Data, loss: LossEntry, seed: int, resolve: Resolve) -> Prepared:
    """Split, fit the encoders on the training rows chunk by chunk; the splits hold streams, not tensors."""
    if isinstance(data.split, Files):
        named = [(name, resolve(getattr(data.split, name), ("data", "split", name))) for name in SPLITS if getattr(data.split, name) is not None]
        described = {"files": {name: source.to_dict() for name, source in named}}
    else:
        source = resolve(data.source, ("data", "source"))
        named, described = [(None, source)], source.to_dict()
    sources = Sources([source for _, source in named])
    label = _label(described)
    reports: list[ColumnReport] = []
    first = sources.first()  # column types are inferred from the first chunk

    # the target and split columns alone, for every row: small beside the whole table
    target_name = _column_name(data.target) or ("label" if described.get("type") in ("images", "audio", "video") else None)
    wanted = [c for c in (target_name, getattr(data.split, "column", None)) if c in first.columns]
    labels, counts = sources.columns(wanted)
    starts = np.cumsum([0, *counts])
    file_splits = {name: np.arange(starts[i], starts[i + 1]) for i, (name, _) in enumerate(named)} if isinstance(data.split, Files) else None
    split = LabelsAndSplit.make(data, labels, described, file_splits, loss, seed, label, reports)
    plan = _inputs(data, first, split.target_column, split.split_column, reports, label)

    # fit: each encoder accumulates the training rows of each chunk
    classes = [(name, ENCODERS.get(type_), options) for name, type_, options in plan]
    states = [cls.fit_state() for _, cls, _ in classes]
    train = np.sort(split.rows["train"])
    hashing = Fingerprint(list(first.columns))
    for chunk in sources.chunks():
        hashing.add(chunk)
        part = chunk.loc[_members(chunk.index.to_numpy(), train)]
        for (name, cls, options), state in zip(classes, states):
            cls.fit_update(state, name, part[name], options)
    encoders = [cls.fit_finish(name, state, options, data.on_error) for (name, cls, options), state in zip(classes, states)]
    schema = _schema(data, encoders, split.target, reports, label)

    targets = split.targets(labels[split.target_column], loss)
    media = schema.media if isinstance(schema.media, FileColumn) else None
    paths = pd.concat(list(sources.chunks([media.column])))[media.column] if media is not None else None
    splits = {}
    for name, (y, indices) in targets.items():
        order = np.argsort(indices, kind="stable")  # streams read rows in file order
        y, indices = y[torch.from_numpy(order)], indices[order]
        if media is not None:
            stream = FileStream(media, path_list(paths.iloc[indices]), schema.on_error)
        else:
            stream = TableStream(sources, indices, schema, label)
        splits[name] = SplitData(None, y, indices, stream)
    if media is not None:
        _fit_statistics(media, splits["train"].stream)
    info = split.info(described, hashing.result(), splits, 0)
    return Prepared(splits, schema, split.task, info, reports)


def _concat(parts: list[pd.Series]) -> pd.Series:
    if isinstance(parts[0].dtype, pd.CategoricalDtype):
        return pd.Series(union_categoricals(parts), dtype="category")
    return pd.concat(parts, ignore_index=True)


def _members(index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of `index` are in the sorted `rows`."""
    at = np.searchsorted(rows, index)
    at[at >= len(rows)] = 0
    return rows[at] == index if len(rows) else np.zeros(len(index), dtype=bool)


def _fit_statistics(media: FileColumn, stream: FileStream) -> None:
    """Normalization statistics from the training files, decoded batch by batch and not kept."""
    statistics = media.statistics()
    for values, _ in stream.batches(512, None, seed=None):
        if values is not None:
            statistics.add(values)
    media.use_statistics(*statistics.result())


def _batch_bounds(n: int, batch_size: int, count: int | None) -> list[tuple[int, int]]:
    count = count or max(1, -(-n // batch_size))
    return [(i * batch_size, n if i == count - 1 else (i + 1) * batch_size) for i in range(count)]


class TableStream:
    """A split of a table, read chunk by chunk and encoded as it is read."""

    def __init__(self, sources: Sources, rows: np.ndarray, schema: DataSchema, label: str):
        self.sources, self.rows, self.schema, self.label = sources, np.asarray(rows), schema, label

    def __len__(self) -> int:
        return len(self.rows)

    def batches(
        self, batch_size: int, count: int | None, seed: int | None, start: int = 0, share: Callable | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, positions in the split) per batch; with a seed each chunk's rows are shuffled."""
        rng = np.random.default_rng(seed) if seed is not None else None
        bounds = _batch_bounds(len(self.rows), batch_size, count)
        buffer_x, buffer_at, taken, batch = None, np.zeros(0, dtype=np.int64), 0, 0
        for chunk in self.sources.chunks(self.schema.input_columns):
            index = chunk.index.to_numpy()
            inside = _members(index, self.rows)
            if not inside.any():
                continue
            positions = np.searchsorted(self.rows, index[inside])
            x, _ = self.schema.encode_inputs(chunk[inside], self.label)
            if rng is not None:
                mix = rng.permutation(len(positions))
                x, positions = x[torch.from_numpy(mix)], positions[mix]
            # what is left of the last chunk, then this one
            buffer_x = x if buffer_x is None else torch.cat([buffer_x[taken:], x])
            buffer_at, taken = np.concatenate([buffer_at[taken:], positions]), 0
            while batch < len(bounds) - 1 and len(buffer_at) - taken >= bounds[batch][1] - bounds[batch][0]:
                size = bounds[batch][1] - bounds[batch][0]
                if batch >= start:
                    yield _shared(buffer_x[taken : taken + size], torch.from_numpy(buffer_at[taken : taken + size]), share)
                taken += size
                batch += 1
        if buffer_x is not None and len(buffer_at) > taken and batch >= start:
            yield _shared(buffer_x[taken:], torch.from_numpy(buffer_at[taken:]), share)


def _shared(x: torch.Tensor, at: torch.Tensor, share: Callable | None):
    if share is None:
        return x, at
    lo, hi = share(0, x.shape[0])
    return x[lo:hi], at[lo:hi]


class _Files(torch.utils.data.Dataset):
    def __init__(self, encoder: FileColumn, paths: list[str]):
        self.encoder, self.paths = encoder, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return i, self.encoder.decode_one(self.paths[i])


def _collate(items):
    """Stack what decoded; name what did not (the caller raises or warns, as data.on_error says)."""
    good = [(i, v) for i, v in items if not isinstance(v, str)]
    failed = [(i, v) for i, v in items if isinstance(v, str)]
    values = torch.from_numpy(np.stack([v for _, v in good])) if good else None
    return values, torch.tensor([i for i, _ in good], dtype=torch.long), failed


class FileStream:
    """A split of image, sound or video files, decoded for each batch in DataLoader worker processes."""

    def __init__(self, encoder: FileColumn, paths: list[str], on_error: str, workers: int | None = None):
        self.encoder, self.paths, self.on_error = encoder, paths, on_error
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers

    def __len__(self) -> int:
        return len(self.paths)

    def batches(
        self, batch_size: int, count: int | None, seed: int | None, start: int = 0, share: Callable | None = None, pin: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.paths)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed is not None else torch.arange(n)
        lists = []
        for lo, hi in _batch_bounds(n, batch_size, count)[start:]:
            a, b = share(lo, hi) if share is not None else (lo, hi)
            lists.append(order[a:b].tolist())
        loader = torch.utils.data.DataLoader(
            _Files(self.encoder, self.paths),
            batch_sampler=lists,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=pin,
        )
        for values, positions, failed in loader:
            check_failures([(self.paths[i], why) for i, why in failed], self.on_error, self.encoder.what)
            yield values, positions  # values None: no file of the batch could be read (on_error: skip)


def is_stream(value) -> bool:
    return isinstance(value, (TableStream, FileStream))



def rebuild_stream(info: dict, schema: DataSchema, loss: LossEntry, names: tuple[str, ...]) -> dict[str, SplitData]:
    """The streamed splits of a run, from its data.json and its own encoders (for --resume)."""
    from dltrain.data.dataset import encode_target

    described = info["source"]
    listed = list(described["files"].values()) if "files" in described else [described]
    sources = Sources([ResolvedSource.from_dict(d) for d in listed])
    media = schema.media if isinstance(schema.media, FileColumn) else None
    wanted = [schema.target.column] + ([media.column] if media is not None else [])
    labels, _ = sources.columns(wanted)
    splits = {}
    for name in names:
        indices = np.sort(np.asarray(info["indices"].get(name, []), dtype=np.int64))
        y, known = encode_target(schema.target, labels[schema.target.column].iloc[indices], loss)
        y, indices = y[torch.from_numpy(known)], indices[known]
        if media is not None:
            stream = FileStream(media, path_list(labels[media.column].iloc[indices]), schema.on_error)
        else:
            stream = TableStream(sources, indices, schema, _label(described))
        splits[name] = SplitData(None, y, indices, stream)
    return splits

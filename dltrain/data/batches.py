"""A split's rows as batches, the one thing the trainer asks of data.

Three kinds, one interface (`draw_order`, `batches`, `to`, `y`, `len`):

- `TensorSplit`: rows encoded once into tensors; a batch is a slice (the fast path, `in_memory`).
- `TableStream`: a table too large for memory, read chunk by chunk and encoded as it is read,
  rows shuffled within each chunk.
- `FileStream`: image, sound or video files decoded for each batch in DataLoader worker processes.

Batches come out on the device of the split's targets. An epoch's order is drawn once
(`draw_order`) and kept in checkpoints, so that an epoch stopped half-way resumes with the same
batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import torch

from dltrain.data.media import FileColumn, check_failures

Share = Callable[[int, int], tuple[int, int]]  # under DDP: this rank's part of rows [lo, hi)


def batch_bounds(n: int, batch_size: int, count: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) of each batch; with `count`, the last batch takes what is left over."""
    count = count or max(1, -(-n // batch_size))
    return [(i * batch_size, n if i == count - 1 else (i + 1) * batch_size) for i in range(count)]


class TensorSplit:
    """A split encoded once into tensors: batches are slices of them, with no per-sample Python."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, rows: np.ndarray):
        self.x, self.y, self.rows = x, y, rows

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> TensorSplit:
        self.x = self.x.to(device)
        self.y = self.y.to(device) if self.y is not None else None
        return self

    def draw_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self), generator=generator)

    def batches(
        self, batch_size: int, count: int | None = None, order: torch.Tensor | None = None, start: int = 0, share: Share | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(inputs, targets) of batches `start` to `count`, in `order` (a permutation of the rows)."""
        x, y, n = self.x, self.y, len(self)
        count = count or max(1, -(-n // batch_size))
        if order is not None:
            order = order.to(x.device)
        for i in range(start, count):
            lo, hi = i * batch_size, n if i == count - 1 else (i + 1) * batch_size
            if share is not None:
                lo, hi = share(lo, hi)
            if order is None:
                yield x[lo:hi], None if y is None else y[lo:hi]
            else:
                index = order[lo:hi]
                yield x[index], y[index]


def _members(index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of `index` are in the sorted `rows`."""
    if not len(rows):
        return np.zeros(len(index), dtype=bool)
    at = np.searchsorted(rows, index)
    at[at >= len(rows)] = 0
    return rows[at] == index


def _seed(order: torch.Tensor | None) -> int | None:
    """A stream's order is a seed (negative: no shuffling, as checkpoints of dltrain 0.1 wrote it)."""
    if order is None or int(order[0]) < 0:
        return None
    return int(order[0])


class _Stream:
    """What the two streams share: targets on the device, and an order drawn as a seed."""

    y: torch.Tensor

    def to(self, device: torch.device):
        self.y = self.y.to(device)
        return self

    def draw_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 2**62, (1,), generator=generator)

    def _out(self, x: torch.Tensor | None, at: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        device = self.y.device
        return (None if x is None else x.to(device, non_blocking=True)), self.y[at.to(device)]


class TableStream(_Stream):
    """A split of a table, read chunk by chunk and encoded as it is read."""

    def __init__(self, table, rows: np.ndarray, y: torch.Tensor, schema, label: str):
        self.table, self.rows, self.y, self.schema, self.label = table, np.asarray(rows), y, schema, label

    def __len__(self) -> int:
        return len(self.rows)

    def batches(
        self, batch_size: int, count: int | None = None, order: torch.Tensor | None = None, start: int = 0, share: Share | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """With an order (a seed) each chunk's rows are shuffled."""
        seed = _seed(order)
        rng = np.random.default_rng(seed) if seed is not None else None
        bounds = batch_bounds(len(self.rows), batch_size, count)
        buffer_x, buffer_at, taken, batch = None, np.zeros(0, dtype=np.int64), 0, 0
        for chunk in self.table.chunks(self.schema.input_columns):
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
                    yield self._shared(buffer_x[taken : taken + size], buffer_at[taken : taken + size], share)
                taken += size
                batch += 1
        if buffer_x is not None and len(buffer_at) > taken and batch >= start:
            yield self._shared(buffer_x[taken:], buffer_at[taken:], share)

    def _shared(self, x: torch.Tensor, at: np.ndarray, share: Share | None):
        if share is not None:
            lo, hi = share(0, x.shape[0])
            x, at = x[lo:hi], at[lo:hi]
        return self._out(x, torch.from_numpy(at))


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


class FileStream(_Stream):
    """A split of image, sound or video files, decoded for each batch in DataLoader worker processes."""

    def __init__(self, encoder: FileColumn, paths: list[str], y: torch.Tensor, rows: np.ndarray, on_error: str, workers: int | None = None):
        self.encoder, self.paths, self.y, self.rows, self.on_error = encoder, paths, y, rows, on_error
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers

    def __len__(self) -> int:
        return len(self.paths)

    def batches(
        self, batch_size: int, count: int | None = None, order: torch.Tensor | None = None, start: int = 0, share: Share | None = None
    ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
        """Inputs are None for a batch of which no file could be read (data.on_error: skip)."""
        n, seed = len(self.paths), _seed(order)
        shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed is not None else torch.arange(n)
        lists = []
        for lo, hi in batch_bounds(n, batch_size, count)[start:]:
            a, b = share(lo, hi) if share is not None else (lo, hi)
            lists.append(shuffled[a:b].tolist())
        loader = torch.utils.data.DataLoader(
            _Files(self.encoder, self.paths),
            batch_sampler=lists,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.y.device.type == "cuda",
        )
        for values, positions, failed in loader:
            check_failures([(self.paths[i], why) for i, why in failed], self.on_error, self.encoder.what)
            yield self._out(values, positions)


def fit_statistics(media: FileColumn, split: TensorSplit | FileStream) -> None:
    """Normalization statistics from the training split's files, batch by batch (nothing kept)."""
    statistics = media.statistics()
    for values, _ in split.batches(512):
        if values is not None:
            statistics.add(values)
    media.use_statistics(*statistics.result())

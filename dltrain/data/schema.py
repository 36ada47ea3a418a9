"""The fitted encoders of a run: what turns new rows into the model's input and targets into tensors.

Saved in every checkpoint as plain data (`to_dict`) and rebuilt from it (`from_dict`), so that
evaluate and predict encode new data exactly as training did, with nothing but the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dltrain.console import warn
from dltrain.data.encoders import CategoryEncoder, Encoder, NumericEncoder, encoder_from_dict, numeric_block
from dltrain.data.media import FileColumn
from dltrain.errors import DataError
from dltrain.task import ZERO_ONE, InputSpec


@dataclass
class DataSchema:
    """Everything needed to encode new rows as training did."""

    inputs: list[Encoder]
    target: Encoder
    id: str | None = None
    cache: bool = True  # decoded files (images) cached on disk
    on_error: str = "raise"  # or "skip": unreadable files are left out with a warning
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # _encode_table's

    @property
    def input_columns(self) -> list[str]:
        return [e.column for e in self.inputs]

    @property
    def media(self):
        """The one input that is not a table column (images, text, sequences...), if any."""
        return next((e for e in self.inputs if not e.tabular), None)

    @property
    def files(self) -> FileColumn | None:
        """The input column of file paths (images, sounds, clips), if the inputs are files."""
        return self.media if isinstance(self.media, FileColumn) else None

    def input_spec(self) -> InputSpec:
        if self.media is not None:
            return InputSpec(self.media.shape, self.media.dtype, self.media.vocab_size)
        return InputSpec((sum(e.width for e in self.inputs),))

    def encode_inputs(
        self, table: pd.DataFrame, label: str, new: bool = False, cache: bool | None = None, on_error: str | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """What the model takes for each row, and which rows could be encoded (unreadable files skipped).

        `new`: data from outside the run (predict, evaluate --data): values that training never saw
        are counted in a warning, since the model reads them as unknown. `cache`: whether decoded
        files are kept in the disk cache (by default as the run was trained; never for files that
        exist once, such as a server's uploads). `on_error`: skip or raise for unreadable files, in
        place of the run's data.on_error (predict --on-error).
        """
        self._check_columns(table.columns.tolist(), label)
        if self.media is not None:
            return self.media.encode(table[self.media.column], self.cache if cache is None else cache, on_error or self.on_error)
        if new:
            for encoder in self.inputs:
                if isinstance(encoder, CategoryEncoder):
                    count, examples = encoder.unseen(table[encoder.column])
                    if count:
                        filled = "the training rate of its positive value" if encoder.type == "binary" else "unknown (<unk>)"
                        warn(
                            f"{label}: column '{encoder.column}' has {count} value(s) that training never saw "
                            f"({', '.join(repr(v) for v in examples)}; it knows {', '.join(encoder.classes[:8])}"
                            f"{', ...' if len(encoder.classes) > 8 else ''}): read as {filled}"
                        )
        return self._encode_table(table), np.ones(len(table), dtype=bool)

    def encode_numbers(self, names: list[str], values: np.ndarray, label: str) -> torch.Tensor | None:
        """Rows that are numbers alone, as one float64 array whose columns are `names` (NaN:
        missing): what encode_inputs gives for the table of them, without building the table (a
        server's JSON rows). None when the model takes more than numbers from them (categories,
        text, files): then the rows are encoded as a table."""
        self._check_columns(names, label)
        if self.media is not None:
            return None
        plan = self._plan(names, (_FLOATS,) * len(names))
        return plan.numbers(values) if not plan.others else None

    def _check_columns(self, names: list, label: str) -> None:
        present = set(names)
        missing = [c for c in self.input_columns if c not in present]
        if missing:
            raise DataError(
                f"{label}: the model needs column(s) {', '.join(missing)}, which are not in it. "
                f"Its columns: {', '.join(map(str, names))}"
            )

    def _encode_table(self, table: pd.DataFrame) -> torch.Tensor:
        """The table columns side by side; numeric columns held as numbers are encoded as one block
        (a row of 32 numbers costs one array operation, not 32 column operations)."""
        names = table.columns.tolist()  # plain strings: iterating a pandas Index is slow
        return self._plan(names, tuple(table.dtypes.tolist())).encode(table)

    def _plan(self, names: list, dtypes: tuple) -> _TablePlan:
        """What goes where depends only on the columns and their types: worked out once for each."""
        key = (tuple(names), dtypes)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _TablePlan(self.inputs, names, dtypes)
            if len(self._plans) > 64:  # clients that send ever new columns do not grow memory
                self._plans.pop(next(iter(self._plans)))
        return plan

    def batch_transform(self, train: bool):
        """What turns a batch of stored inputs into the model's input (None: they are used as stored)."""
        return self.media.batch_transform(train) if self.media is not None else None

    def to_dict(self) -> dict:
        return {
            "inputs": [e.to_dict() for e in self.inputs],
            "target": self.target.to_dict(),
            "id": self.id,
            "cache": self.cache,
            "on_error": self.on_error,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DataSchema:
        return cls(
            [encoder_from_dict(e) for e in data["inputs"]],
            encoder_from_dict(data["target"]),
            data.get("id"),
            data.get("cache", True),
            data.get("on_error", "raise"),
        )


class _TablePlan:
    """How a table with given columns and types is encoded: the numeric inputs held as numbers in
    one block (their places in the table and in the model's input), the others encoder by encoder."""

    def __init__(self, inputs: list[Encoder], names: list, dtypes: list):
        kinds = dict(zip(names, dtypes))
        self.width = sum(e.width for e in inputs)
        self.block, self.others, at = [], [], []
        start = 0
        for encoder in inputs:
            if type(encoder) is NumericEncoder and encoder.plain and _holds_numbers(kinds[encoder.column]):
                self.block.append(encoder)
                at.append(start)
            else:
                self.others.append((encoder, start))
            start += encoder.width
        self.columns = [e.column for e in self.block]
        # a table of numbers alone is read as one array and its columns picked by position
        numeric = len(kinds) == len(names) and all(_holds_numbers(t) for t in dtypes)
        self.positions = [names.index(c) for c in self.columns] if numeric else None
        self.whole = at == list(range(self.width))  # the block is the model's whole input, in order
        self.at = torch.tensor(at, dtype=torch.long)
        self.means = np.array([e.mean for e in self.block], dtype="float64")
        self.stds = np.array([e.std for e in self.block], dtype="float64")

    def numbers(self, values: np.ndarray) -> torch.Tensor:
        """The model's input from the table's numbers (rows, table columns) when the numeric
        inputs are all it takes (`whole`, no `others`); else the numeric inputs' block."""
        if self.positions != list(range(values.shape[1])):
            values = values[:, self.positions]
        return torch.from_numpy(numeric_block(self.block, values, self.means, self.stds)).float()

    def encode(self, table: pd.DataFrame) -> torch.Tensor:
        block = None
        if self.block:
            if self.positions is not None:  # the same path as a server's rows of numbers
                block = self.numbers(table.to_numpy("float64", na_value=np.nan))
            else:
                values = table[self.columns].to_numpy("float64", na_value=np.nan)
                block = torch.from_numpy(numeric_block(self.block, values, self.means, self.stds)).float()
            if self.whole:
                return block
        x = torch.empty(len(table), self.width)
        if block is not None:
            x[:, self.at] = block
        for encoder, start in self.others:
            x[:, start : start + encoder.width] = encoder.transform(table[encoder.column])
        return x


_FLOATS = np.dtype("float64")


def _holds_numbers(dtype) -> bool:
    """Booleans, integers or floats (numpy's or pandas' nullable ones), as parse_numbers takes them."""
    return getattr(dtype, "kind", "O") in "biuf"


def encode_target(encoder: Encoder, series: pd.Series, form: str) -> tuple[torch.Tensor, np.ndarray]:
    """The target in the loss's form (dltrain.task), and a mask of the rows whose value the encoder knows."""
    if isinstance(encoder, NumericEncoder):
        return encoder.numbers(series).unsqueeze(1), series.notna().to_numpy()
    codes = encoder.codes(series)
    known = codes >= 0
    codes = np.where(known, codes, 0)
    if form == ZERO_ONE:
        return torch.from_numpy(codes).float().unsqueeze(1), known
    return torch.from_numpy(codes), known

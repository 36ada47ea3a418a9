"""Sequence columns: a series of numbers per cell -> (length, 1) floats, standardized, left-padded.

A cell holds numbers separated by spaces or commas, or a JSON list. Values are standardized with
the training split's mean and std; rows are cut to `max_length` (default: the longest training
row), keeping their last values, and left-padded with zeros (the mean), so the last position holds
the last value, where a recurrent layer's final state reads it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from dltrain.errors import DataError

_SEPARATORS = re.compile(r"[\s,;]+")


def parse(column: str, series: pd.Series) -> list[np.ndarray]:
    """Each cell as float64 values; a DataError names the first cell that is not numbers."""
    rows = []
    for position, value in enumerate(series.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            rows.append(np.zeros(0))
            continue
        if isinstance(value, (int, float)):
            rows.append(np.array([float(value)]))
            continue
        if isinstance(value, (list, tuple)):
            items = list(value)
        else:
            text = str(value).strip()
            if text.startswith("["):
                try:
                    items = json.loads(text)
                except json.JSONDecodeError:
                    items = _SEPARATORS.split(text.strip("[]").strip())
            else:
                items = _SEPARATORS.split(text) if text else []
        try:
            numbers = np.array([float(item) for item in items if item != ""], dtype=np.float64)
        except (TypeError, ValueError):
            bad = next(item for item in items if not _is_number(item))
            raise DataError(
                f"column '{column}' is a sequence, but data row {_row(series, position)} holds {bad!r}, which is not "
                "a number: a sequence cell holds numbers separated by spaces or commas, or a JSON list"
            ) from None
        if not np.isfinite(numbers).all():
            raise DataError(f"column '{column}': data row {_row(series, position)} holds a value that is not finite")
        rows.append(numbers)
    return rows


def _row(series: pd.Series, position: int):
    """The 1-based data row (after the header) of the cell at `position`."""
    label = series.index[position]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else label


def _is_number(item) -> bool:
    try:
        float(item)
        return True
    except (TypeError, ValueError):
        return False


@dataclass
class SequenceEncoder:
    column: str
    max_length: int = 1
    mean: float = 0.0
    std: float = 1.0
    type: ClassVar[str] = "sequence"
    options: ClassVar[tuple[str, ...]] = ("max_length",)
    tabular: ClassVar[bool] = False
    dtype: ClassVar[str] = "float"
    vocab_size: ClassVar[int | None] = None

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        value = options.get("max_length")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return f"max_length is a whole number of at least 1; found {value!r}"
        return None

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise") -> SequenceEncoder:
        state = cls.fit_state()
        cls.fit_update(state, column, series, options)
        return cls.fit_finish(column, state, options)

    @staticmethod
    def fit_state() -> dict:
        return {"count": 0, "sum": 0.0, "squares": 0.0, "longest": 0}

    @staticmethod
    def fit_update(state: dict, column: str, series: pd.Series, options: dict | None = None) -> None:
        for values in parse(column, series):
            state["count"] += len(values)
            state["sum"] += float(values.sum())
            state["squares"] += float((values * values).sum())
            state["longest"] = max(state["longest"], len(values))

    @classmethod
    def fit_finish(cls, column: str, state: dict, options: dict, on_error: str = "raise") -> SequenceEncoder:
        n = state["count"]
        if n == 0:
            raise DataError(f"column '{column}' is a sequence, but its training rows hold no numbers")
        mean = state["sum"] / n
        std = math.sqrt(max(state["squares"] / n - mean * mean, 0.0))
        return cls(column, int(options.get("max_length") or state["longest"]), mean, std if std > 1e-12 else 1.0)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.max_length, 1)

    def describe(self) -> str:
        return f"up to {self.max_length} values per row, mean {self.mean:.4g}, std {self.std:.4g}"

    def encode(self, series: pd.Series, use_cache: bool = True, on_error: str = "raise") -> tuple[torch.Tensor, np.ndarray]:
        out = np.zeros((len(series), self.max_length, 1), dtype=np.float32)
        for row, values in enumerate(parse(self.column, series)):
            values = values[-self.max_length :]
            if len(values):
                out[row, self.max_length - len(values) :, 0] = (values - self.mean) / self.std
        return torch.from_numpy(out), np.ones(len(series), dtype=bool)

    def batch_transform(self, train: bool):
        return None

    def to_dict(self) -> dict:
        return {"type": self.type, "column": self.column, "max_length": self.max_length, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> SequenceEncoder:
        return cls(data["column"], data["max_length"], data["mean"], data["std"])

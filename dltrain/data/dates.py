"""Dates as numbers: a column of dates (or dates and times) becomes the year, standardized, and the
parts of the calendar that vary in the training rows as points on a circle (sine and cosine), so
December is next to January and Sunday next to Monday.

Which parts vary is decided on the training split and kept with the encoder, so the width of the
model's input never depends on the rows being predicted. A cell that is no date is missing: every
feature of that row is 0 (the training mean of the year; the centre of each circle).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

# the cycles a date may carry: name -> (its period, what it is)
CYCLES: dict[str, tuple[float, str]] = {
    "month": (12.0, "month of the year"),
    "weekday": (7.0, "day of the week"),
    "day_of_year": (366.0, "day of the year"),
    "hour": (24.0, "hour of the day"),
}
_DATE_SHAPE = re.compile(r"\d[-/.:]\d")  # 2021-03-04, 04/03/2021, 4.3.2021, 10:30
_MAX_SAMPLE = 200
_SHARE = 0.9  # a column is dates when at least 90% of a sample of its cells parse as dates


def parse_dates(series: pd.Series) -> pd.Series:
    """The cells as timestamps (NaT where a cell is no date), in any of the formats pandas reads,
    each cell by its own format; times with a zone are read in UTC."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    text = series.astype("string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    return parsed.dt.tz_localize(None)


def looks_like_dates(series: pd.Series) -> bool:
    """Text cells that are dates: a sample of them has the shape of a date and parses as one."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False  # years as numbers (2019) are numbers
    sample = series.dropna().astype("string").head(_MAX_SAMPLE)
    if not len(sample) or not sample.str.contains(_DATE_SHAPE).mean() > _SHARE:
        return False
    return bool(parse_dates(sample).notna().mean() > _SHARE)


def _parts(stamps: pd.Series) -> dict[str, np.ndarray]:
    """Each cycle's position, from 0 to its period, per row (NaN where the cell is no date)."""
    values = pd.DatetimeIndex(stamps)
    hours = values.hour + values.minute / 60 + values.second / 3600
    return {
        "month": np.asarray(values.month - 1, dtype="float64"),
        "weekday": np.asarray(values.day_of_week, dtype="float64"),
        "day_of_year": np.asarray(values.day_of_year - 1, dtype="float64"),
        "hour": np.asarray(hours, dtype="float64"),
    }


def _years(stamps: pd.Series) -> np.ndarray:
    """The year with its fraction (2021.5 in July 2021): a trend over the years is one number."""
    values = pd.DatetimeIndex(stamps)
    return np.asarray(values.year + (values.day_of_year - 1) / 366.0, dtype="float64")


@dataclass
class DateEncoder:
    """A date column: the year, standardized, and sin/cos of each cycle that varies in training."""

    column: str
    mean: float = 0.0  # of the year
    std: float = 1.0
    cycles: list[str] = field(default_factory=list)
    type: ClassVar[str] = "date"
    options: ClassVar[tuple[str, ...]] = ()
    tabular: ClassVar[bool] = True

    @property
    def width(self) -> int:
        return 1 + 2 * len(self.cycles)

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise") -> DateEncoder:
        state = cls.fit_state()
        cls.fit_update(state, column, series, options)
        return cls.fit_finish(column, state, options)

    @staticmethod
    def fit_state() -> dict:
        return {"count": 0, "sum": 0.0, "squares": 0.0, "seen": {name: set() for name in CYCLES}}

    @staticmethod
    def fit_update(state: dict, column: str, series: pd.Series, options: dict | None = None) -> None:
        stamps = parse_dates(series)
        stamps = stamps[stamps.notna()]
        if not len(stamps):
            return
        years = _years(stamps)
        state["count"] += len(years)
        state["sum"] += float(years.sum())
        state["squares"] += float((years * years).sum())
        for name, values in _parts(stamps).items():
            seen = state["seen"][name]
            if len(seen) < 2:  # whether it varies is all that is kept
                seen.update(np.unique(np.round(values, 6))[:2].tolist())

    @classmethod
    def fit_finish(cls, column: str, state: dict, options: dict, on_error: str = "raise") -> DateEncoder:
        from dltrain.errors import DataError

        n = state["count"]
        if n == 0:
            raise DataError(f"column '{column}' is a date column, but none of its training cells is a date (like 2021-03-04 or 2021-03-04 10:30)")
        mean = state["sum"] / n
        std = math.sqrt(max(state["squares"] / n - mean * mean, 0.0)) if n > 1 else 0.0
        cycles = [name for name in CYCLES if len(state["seen"][name]) > 1]
        return cls(column, mean, std if std > 1e-9 else 1.0, cycles)

    def transform(self, series: pd.Series) -> torch.Tensor:
        stamps = parse_dates(series)
        known = stamps.notna().to_numpy()
        out = np.zeros((len(series), self.width), dtype="float64")
        if known.any():
            present = stamps[known]
            out[known, 0] = (_years(present) - self.mean) / self.std
            parts = _parts(present)
            for i, name in enumerate(self.cycles):
                angle = 2 * math.pi * parts[name] / CYCLES[name][0]
                out[known, 1 + 2 * i] = np.sin(angle)
                out[known, 2 + 2 * i] = np.cos(angle)
        return torch.from_numpy(out).float()

    def describe(self) -> str:
        """What the features are, for check's column table."""
        said = ", ".join(CYCLES[name][1] for name in self.cycles)
        return f"the year{', and as cycles: ' + said if said else ''}"

    def to_dict(self) -> dict:
        return {"type": self.type, "column": self.column, "mean": self.mean, "std": self.std, "cycles": list(self.cycles)}

    @classmethod
    def from_dict(cls, data: dict) -> DateEncoder:
        return cls(data["column"], data["mean"], data["std"], list(data["cycles"]))

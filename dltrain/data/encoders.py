"""The encoder registry: columns -> tensors, fitted on the training split alone.

An encoder is fitted once, on the training rows, and saved as plain data (lists, floats, str)
in every checkpoint, so `evaluate` and `predict` encode new data exactly as training did.
Values are compared as text keys (`3` and `3.0` are one value), so a column read as numbers in
one file and as text in another still matches.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from dltrain.components import Registry, suggest
from dltrain.console import warn
from dltrain.data import numeric
from dltrain.data.audio import EXTENSIONS as AUDIO_EXTENSIONS
from dltrain.data.audio import AudioEncoder
from dltrain.data.dates import DateEncoder, looks_like_dates
from dltrain.data.images import EXTENSIONS as IMAGE_EXTENSIONS
from dltrain.data.images import ImageEncoder
from dltrain.data.sequence import SequenceEncoder
from dltrain.data.text import TextEncoder
from dltrain.data.video import EXTENSIONS as VIDEO_EXTENSIONS
from dltrain.data.video import VideoEncoder
from dltrain.errors import DataError
from dltrain.task import untransform

UNKNOWN = "<unk>"
MAX_CATEGORIES = 50  # a string column with more distinct values is not inferred as a category
MAX_TARGET_CLASSES = 20  # an integer target with more distinct values is numeric
MISSING_MARKERS = ("", "?", "-", "--")  # cells that mean "unknown" in many published tables (pandas reads NA, N/A, null...)
NUMERIC_SHARE = 0.95  # a text column whose other cells are numbers is numeric when at most 5% are not
_THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"  # 1,234 or 1,234,567.89


def parse_numbers(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text as numbers (thousands separators allowed; missing markers missing) and the cells that are not numbers."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
        return values, pd.Series(False, index=series.index)
    try:  # per distinct value, as keys() does
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
    except TypeError:
        return _parse_text_numbers(series)
    if len(distinct) * 2 > len(series):
        return _parse_text_numbers(series)
    values, bad = _parse_text_numbers(pd.Series(distinct, dtype=object))
    values = np.append(values.to_numpy(), np.nan)[codes]
    bad = np.append(bad.to_numpy(), False)[codes]
    return pd.Series(values, index=series.index, dtype="float64"), pd.Series(bad, index=series.index, dtype=bool)


def _parse_text_numbers(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = series.astype("string").str.strip()
    text = text.where(~text.isin(MISSING_MARKERS), pd.NA)
    separated = text.str.match(_THOUSANDS).fillna(False).astype(bool)
    if separated.any():
        text = text.mask(separated, text.str.replace(",", "", regex=False))
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values, (values.isna() & text.notna()).astype(bool)


def keys(series: pd.Series) -> pd.Series:
    """Each value as the text that identifies it; missing values stay missing (pd.NA).

    Numbers are written one way whatever the file held (3, 3.0 and "3.0" are "3"), and true/false
    one way whatever their case, so encoders fitted on one file match values read from another.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):  # the keys of each category, taken by code
        categories = keys(pd.Series(series.cat.categories))
        text = np.append(categories.to_numpy(dtype=object, na_value=None), None)[series.cat.codes.to_numpy()]
        return pd.Series(text, index=series.index, dtype="string")
    if pd.api.types.is_bool_dtype(series):
        return series.map({True: "true", False: "false"}).astype("string")
    if pd.api.types.is_numeric_dtype(series):
        return _number_keys(series.astype("float64"))
    try:  # the work is per distinct value: a column of 100,000 cells often holds a handful
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists)
        return _text_keys(series)
    if len(distinct) * 2 > len(series):
        return _text_keys(series)
    text = np.append(_text_keys(pd.Series(distinct, dtype=object)).to_numpy(dtype=object, na_value=None), None)[codes]
    return pd.Series(text, index=series.index, dtype="string")


def _text_keys(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    text = text.where(text.notna() & ~text.isin(MISSING_MARKERS), pd.NA)
    lowered = text.str.lower()
    text = text.mask(lowered.isin(["true", "false"]), lowered)
    numbers = pd.to_numeric(text, errors="coerce")
    numeric = numbers.notna().to_numpy()
    if numeric.any():
        text = text.copy()
        text[numeric] = _number_keys(numbers[numeric].astype("float64"))
    return text


def _number_keys(values: pd.Series) -> pd.Series:
    # format each distinct number once: a column has far fewer distinct values than rows
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    text = np.array([_number_key(v) for v in distinct] + [None], dtype=object)
    return pd.Series(text[codes], index=values.index, dtype="string")


def _number_key(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return str(value)


_ALIASES = {"true": "1", "false": "0", "1": "true", "0": "false"}


def is_missing(series: pd.Series) -> pd.Series:
    """Missing values: NaN, None, or text that is empty."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.isna()
    return keys(series).isna()


def _sort_keys(values: list[str]) -> list[str]:
    """Numbers in numeric order, then text in text order."""

    def order(value: str) -> tuple:
        try:
            return (0, float(value), value)
        except ValueError:
            return (1, 0.0, value)

    return sorted(values, key=order)


@dataclass
class Encoder:
    """Base of the encoders: a column, its type, and the counts `check` reports."""

    column: str
    type: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()

    width: ClassVar[int] = 1
    tabular: ClassVar[bool] = True  # one float vector per row, concatenated with the other table columns

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise") -> Encoder:
        """Fit on the training rows: the same accumulation that fits chunk by chunk when streaming."""
        state = cls.fit_state()
        cls.fit_update(state, column, series, options)
        return cls.fit_finish(column, state, options)

    def to_dict(self) -> dict:
        raise NotImplementedError

    def transform(self, series: pd.Series) -> torch.Tensor:
        """(rows, width) float32 for an input."""
        raise NotImplementedError


@dataclass
class NumericEncoder(Encoder):
    """A number, standardized with the training mean and std; missing values become the mean.

    Options (dltrain.data.numeric): `transform: log | quantile` maps the value first (log1p, then
    standardized; or to a normal score through the training quantiles), and `encoding:
    piecewise_linear | periodic` turns the result into several features.
    """

    mean: float = 0.0
    std: float = 1.0
    transform_kind: str | None = None  # log or quantile
    minimum: float = 0.0  # log: the training minimum (lower values are taken as it) and what is added before log1p
    shift: float = 0.0
    quantiles: list[float] | None = None  # quantile: the training values at evenly spaced levels
    encoding: dict | None = None  # {"type": "piecewise_linear", "edges": [...]} or {"type": "periodic", "frequencies": [...]}
    maximum: float | None = None  # log: the training maximum, which a target's decoded predictions stay under
    type: ClassVar[str] = "numeric"
    options: ClassVar[tuple[str, ...]] = ("transform", "encoding")

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        return numeric.check_transform("transform", options.get("transform")) or numeric.check_encoding(options.get("encoding"))

    @staticmethod
    def fit_state() -> dict:
        return {"count": 0, "sum": 0.0, "squares": 0.0, "sample": None}

    @staticmethod
    def fit_update(state: dict, column: str, series: pd.Series, options: dict | None = None) -> None:
        values = _numbers(column, series, fitting=True).dropna().to_numpy("float64")
        state["count"] += len(values)
        state["sum"] += float(values.sum())
        state["squares"] += float((values * values).sum())
        if options and (options.get("transform") or options.get("encoding")):  # they need more than sums
            if state["sample"] is None:
                state["sample"] = numeric.sample_state()
            numeric.sample_update(state["sample"], values)

    @classmethod
    def fit_finish(cls, column: str, state: dict, options: dict, on_error: str = "raise") -> NumericEncoder:
        n = state["count"]
        mean = state["sum"] / n if n else 0.0
        std = math.sqrt(max(state["squares"] / n - mean * mean, 0.0)) if n > 1 else 0.0
        # a constant column, or one whose spread is lost in rounding, is only centred
        encoder = cls(column, mean, _spread(std, mean))
        transform, encoding = options.get("transform"), options.get("encoding")
        if not transform and not encoding:
            return encoder
        sample = numeric.sample_values(state["sample"]) if state["sample"] is not None else np.empty(0)
        encoder.transform_kind = transform
        if transform == "log":
            encoder.minimum = float(state["sample"]["min"]) if len(sample) else 0.0
            encoder.maximum = float(state["sample"]["max"]) if len(sample) else None
            encoder.shift = numeric.log_shift(encoder.minimum)
            logs = numeric.log_values(sample, encoder.minimum, encoder.shift)
            encoder.mean = float(logs.mean()) if len(logs) else 0.0
            encoder.std = _spread(float(logs.std()) if len(logs) > 1 else 0.0, encoder.mean)
        elif transform == "quantile":
            encoder.quantiles = numeric.fit_quantiles(sample)
            encoder.mean, encoder.std = 0.0, 1.0
        if encoding:
            settings = numeric.encoding_settings(encoding)
            if settings["type"] == "piecewise_linear":
                encoder.encoding = {"type": "piecewise_linear", "edges": numeric.fit_edges(encoder._scaled(sample), settings["bins"])}
            else:
                frequencies = numeric.fit_frequencies(column, settings["frequencies"], float(settings["sigma"]))
                encoder.encoding = {"type": "periodic", "frequencies": frequencies}
        return encoder

    @property
    def plain(self) -> bool:
        """Standardized alone (no transform, no encoding): what numeric_block encodes many of at once."""
        return self.transform_kind is None and self.encoding is None

    @property
    def width(self) -> int:  # type: ignore[override]
        if self.encoding is None:
            return 1
        if self.encoding["type"] == "piecewise_linear":
            return len(self.encoding["edges"]) - 1
        return 2 * len(self.encoding["frequencies"])

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        """Transformed and standardized, float64; missing values (NaN) at 0, the centre."""
        if self.transform_kind == "quantile":
            scores = numeric.normal_scores(values, self.quantiles)
            return np.where(np.isnan(scores), 0.0, scores)
        if self.transform_kind == "log":
            values = numeric.log_values(values, self.minimum, self.shift)
        return standardize(values, self.mean, self.std)

    def numbers(self, series: pd.Series) -> torch.Tensor:
        """The standardized (transformed) values, (rows,) float32, missing filled with the training mean."""
        return torch.from_numpy(self._scaled(_numbers(self.column, series).to_numpy("float64"))).float()

    def transform(self, series: pd.Series) -> torch.Tensor:
        if self.encoding is None:
            return self.numbers(series).unsqueeze(1)
        scaled = self._scaled(_numbers(self.column, series).to_numpy("float64"))
        if self.encoding["type"] == "piecewise_linear":
            return torch.from_numpy(numeric.piecewise_linear(scaled, self.encoding["edges"])).float()
        return torch.from_numpy(numeric.periodic(scaled, self.encoding["frequencies"])).float()

    def target_transform(self) -> dict | None:
        """The transform a target's values are decoded through (Task.values), as plain data."""
        if self.transform_kind == "log":
            found = {"type": "log", "minimum": self.minimum, "shift": self.shift}
            return found if self.maximum is None else {**found, "maximum": self.maximum}
        if self.transform_kind == "quantile":
            return {"type": "quantile", "quantiles": list(self.quantiles)}
        return None

    def decode(self, standardized: torch.Tensor) -> torch.Tensor:
        values = standardized.double() * self.std + self.mean
        transform = self.target_transform()
        return untransform(values, transform) if transform else values

    def describe(self) -> str:
        """For check's column table."""
        parts = [self.transform_kind] if self.transform_kind else []
        if self.encoding is not None:
            parts.append(f"{self.encoding['type']}, {self.width} features")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        data = {"type": self.type, "column": self.column, "mean": self.mean, "std": self.std}
        if self.transform_kind == "log":
            data.update(transform="log", minimum=self.minimum, shift=self.shift)
            if self.maximum is not None:
                data["maximum"] = self.maximum
        elif self.transform_kind == "quantile":
            data.update(transform="quantile", quantiles=list(self.quantiles))
        if self.encoding is not None:
            data["encoding"] = {k: list(v) if isinstance(v, list) else v for k, v in self.encoding.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NumericEncoder:
        quantiles = data.get("quantiles")
        encoding = data.get("encoding")
        return cls(
            data["column"], data["mean"], data["std"], data.get("transform"), data.get("minimum", 0.0), data.get("shift", 0.0),
            list(quantiles) if quantiles is not None else None,
            {k: list(v) if isinstance(v, list) else v for k, v in encoding.items()} if encoding is not None else None,
            data.get("maximum"),
        )  # fmt: skip


def _spread(std: float, mean: float) -> float:
    """The std to divide by: 1 for a constant column, or one whose spread is lost in rounding."""
    return std if std > 1e-12 * max(1.0, abs(mean)) and math.isfinite(std) else 1.0


def standardize(values: np.ndarray, mean, std) -> np.ndarray:
    """(values - mean) / std, missing values (NaN) at the training mean (0); `mean` and `std` may be
    one per column of a (rows, columns) block, which is how a table of numbers is encoded at once."""
    out = (values - mean) / std
    return np.where(np.isnan(out), 0.0, out)


def numeric_block(encoders: list[NumericEncoder], values: np.ndarray, means: np.ndarray | None = None, stds: np.ndarray | None = None) -> np.ndarray:
    """Numeric columns already held as numbers, encoded together: (rows, columns) float64, as each
    encoder's `numbers` would give them one by one (infinite values missing, with the same warning).
    `means` and `stds`: the encoders' own, when the caller holds them as arrays already."""
    infinite = np.isinf(values)
    if infinite.any():
        for j in np.flatnonzero(infinite.any(0)):
            _warn_infinite(encoders[j].column, int(infinite[:, j].sum()))
        values = np.where(infinite, np.nan, values)
    if means is None or stds is None:
        means = np.array([e.mean for e in encoders], dtype="float64")
        stds = np.array([e.std for e in encoders], dtype="float64")
    return standardize(values, means, stds)


def _warn_infinite(column: str, count: int) -> None:
    warn(f"column '{column}': {count} infinite value(s) are read as missing values, filled with the training mean", key=(column, "infinite"))


def _numbers(column: str, series: pd.Series, fitting: bool = False) -> pd.Series:
    """The column's numbers; a few text cells ('?', 'n.a.') become missing with a warning.

    While fitting, more than 5% of text is an error (the column is not numeric); on new data, every
    text cell becomes missing, counted in a warning, so that one bad cell never stops a prediction.
    """
    values, bad = parse_numbers(series)
    if bad.any():
        count = int(bad.sum())
        examples = ", ".join(repr(v) for v in series[bad].astype(str).unique()[:3])
        present = int(values.notna().sum()) + count
        if fitting and count > (1 - NUMERIC_SHARE) * present:
            raise DataError(
                f"column '{column}' is numeric, but {count} of its {present} filled rows hold text ({examples}), "
                f"the first in data row {_row(series, bad)}: give it type category, or clean those rows"
            )
        warn(
            f"column '{column}' is numeric: {count} cell(s) of text ({examples}) are read as missing values"
            + (", filled with the training mean" if not fitting else ""),
            key=(column, "text in numbers", examples),
        )
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        mask = pd.Series(infinite, index=series.index)
        if fitting:
            raise DataError(
                f"column '{column}' holds {int(infinite.sum())} value(s) that are infinite or too large for a float "
                f"(the first in data row {_row(series, mask)}: {series[mask].iloc[0]}); give finite numbers, or leave the cells empty"
            )
        _warn_infinite(column, int(infinite.sum()))
        values = values.mask(mask)
    return values


@dataclass
class CategoryEncoder(Encoder):
    """Classes: one-hot for an input (with an `<unk>` slot for missing and unseen values), an index for a target."""

    classes: list[str] = field(default_factory=list)
    type: ClassVar[str] = "category"

    @staticmethod
    def fit_state() -> Counter:
        return Counter()

    @staticmethod
    def fit_update(state: Counter, column: str, series: pd.Series, options: dict | None = None) -> None:
        state.update(keys(series).dropna().value_counts().to_dict())

    @classmethod
    def fit_finish(cls, column: str, state: Counter, options: dict, on_error: str = "raise") -> CategoryEncoder:
        return cls(column, _sort_keys(list(state)))

    @property
    def width(self) -> int:  # type: ignore[override]
        return len(self.classes) + 1

    def codes(self, series: pd.Series) -> np.ndarray:
        """The class index of each row; -1 for missing or unseen values.

        true/false and 1/0 stand for each other where only one pair was seen in training: a column
        of true/false with gaps is read as 1.0/0.0/NaN from JSON, and as True/False from CSV.
        """
        found = keys(series)
        index = pd.Index(self.classes, dtype="string")
        codes = index.get_indexer(found).astype("int64")
        unseen = (codes < 0) & found.notna().to_numpy()
        if unseen.any():
            aliased = found[unseen].map(_ALIASES).astype("string")
            codes[unseen] = index.get_indexer(aliased)
        return codes

    def unseen(self, series: pd.Series) -> tuple[int, list[str]]:
        """How many filled cells hold a value that training never saw, and a few of those values."""
        found = keys(series)
        mask = (self.codes(series) < 0) & found.notna().to_numpy()
        return int(mask.sum()), [str(v) for v in found[mask].unique()[:3]]

    def transform(self, series: pd.Series) -> torch.Tensor:
        codes = torch.from_numpy(self.codes(series))
        codes[codes < 0] = len(self.classes)  # the <unk> slot
        return torch.nn.functional.one_hot(codes, self.width).float()

    def to_dict(self) -> dict:
        return {"type": self.type, "column": self.column, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict) -> CategoryEncoder:
        return cls(data["column"], list(data["classes"]))


@dataclass
class BinaryEncoder(CategoryEncoder):
    """Two values as 0/1: `positive` (default: the second in sorted order) is 1. Missing: the training rate."""

    rate: float = 0.5  # the share of positives in training rows, for missing values
    type: ClassVar[str] = "binary"
    options: ClassVar[tuple[str, ...]] = ("positive",)
    width: ClassVar[int] = 1

    @classmethod
    def fit_finish(cls, column: str, state: Counter, options: dict, on_error: str = "raise") -> BinaryEncoder:
        values = _sort_keys(list(state))
        if len(values) > 2:
            shown = ", ".join(values[:5]) + (", ..." if len(values) > 5 else "")
            raise DataError(
                f"column '{column}' is binary, but its training rows hold {len(values)} values ({shown}): "
                "give it type category"
            )
        positive = options.get("positive")
        if positive is not None:
            positive = keys(pd.Series([positive])).iloc[0]
            if positive not in values:
                raise DataError(
                    f"column '{column}': positive value {positive!r} is not among its values ({', '.join(values)})"
                )
            values = [v for v in values if v != positive] + [positive]
        total = sum(state.values())
        return cls(column, values, state[values[-1]] / total if total and len(values) == 2 else 0.5)

    def transform(self, series: pd.Series) -> torch.Tensor:
        codes = torch.from_numpy(self.codes(series)).float()
        codes[codes < 0] = self.rate
        return codes.unsqueeze(1)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "rate": self.rate}

    @classmethod
    def from_dict(cls, data: dict) -> BinaryEncoder:
        return cls(data["column"], list(data["classes"]), data["rate"])


ENCODERS: Registry[type[Encoder]] = Registry(
    "column type",
    {
        e.type: e
        for e in (
            NumericEncoder,
            BinaryEncoder,
            CategoryEncoder,
            DateEncoder,
            ImageEncoder,
            TextEncoder,
            SequenceEncoder,
            AudioEncoder,
            VideoEncoder,
        )
    },
)


def tabular_types() -> tuple[str, ...]:
    """The column types that become part of one float vector per row (numeric, binary, category)."""
    return tuple(name for name, encoder in ENCODERS.entries.items() if encoder.tabular)


def file_types() -> tuple[str, ...]:
    """The column types whose cells are paths of files (image, audio, video)."""
    from dltrain.data.media import FileColumn

    return tuple(name for name, encoder in ENCODERS.entries.items() if issubclass(encoder, FileColumn))


def check_column_options(type_: str | None, options: dict) -> str | None:
    """A message when a column's type or options are unknown; None when they are fine."""
    if type_ is None:
        known = sorted({o for e in ENCODERS.entries.values() for o in e.options})
        for key in options:
            if key not in known:
                return f"unknown column option '{key}'.{suggest(key, known)} Options: {', '.join(known) or 'none'}"
        for encoder in ENCODERS.entries.values():  # the values of each type's own options
            own = {k: v for k, v in options.items() if k in encoder.options}
            check = getattr(encoder, "check_options", None)
            if own and check and (message := check(own)):
                return message
        return None
    if type_ not in ENCODERS.entries:
        return f"unknown column type '{type_}'.{suggest(type_, ENCODERS.names())} Known types: {', '.join(ENCODERS.names())}"
    encoder = ENCODERS.get(type_)
    allowed = encoder.options
    for key in options:
        if key not in allowed:
            accepted = ", ".join(allowed) if allowed else "none"
            return f"type {type_} has no option '{key}'.{suggest(key, list(allowed))} Its options: {accepted}"
    check = getattr(encoder, "check_options", None)
    return check(options) if check else None


def encoder_from_dict(data: dict) -> Encoder:
    return ENCODERS.get(data["type"]).from_dict(data)


@dataclass(frozen=True)
class Inferred:
    type: str
    reason: str  # for check's column table: why this type


def infer_type(series: pd.Series, is_target: bool) -> Inferred:
    """The column type the data suggests, as DESIGN.md's table of column types lays it out."""
    present = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return Inferred("binary", "true/false values")
    if not is_target and pd.api.types.is_datetime64_any_dtype(series):
        return Inferred("date", _DATES)
    if pd.api.types.is_numeric_dtype(series):
        values = present.to_numpy(dtype="float64")
        if not is_target:  # an input needs only: two distinct values or more
            return Inferred("binary", "two distinct numbers") if _two_values(values) else Inferred("numeric", "numbers")
        distinct = present.nunique()
        if distinct == 2:
            return Inferred("binary", "two distinct numbers")
        integral = bool(len(values)) and _whole(values)
        if integral and distinct <= MAX_TARGET_CLASSES:
            return Inferred("category", f"whole numbers, {distinct} distinct (at most {MAX_TARGET_CLASSES})")
        return Inferred("numeric", "numbers")
    found = keys(present)
    present = present[~found.isna()]  # missing markers ('?', '-') are not values
    if present.dtype == object and bool(present.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).any()):
        return Inferred("lists", "cells hold lists or mappings (give type sequence for lists of numbers)")
    distinct = found.nunique()
    text = present.astype("string")
    lowered = text.str.lower()
    for type_, extensions, what in (
        ("image", IMAGE_EXTENSIONS, "image files"),
        ("audio", AUDIO_EXTENSIONS, "wav files"),
        ("video", VIDEO_EXTENSIONS, "video files"),
    ):
        if len(text) and bool(lowered.str.endswith(extensions).all()):
            return Inferred(type_, f"paths of {what}")
    if distinct == 2:
        return Inferred("binary", "two distinct values")
    numbers, bad = parse_numbers(present)
    if len(present) and distinct > 2 and bad.sum() <= (1 - NUMERIC_SHARE) * len(present):
        whole = bool((numbers.dropna() % 1 == 0).all())
        note = f"; {int(bad.sum())} text cell(s) read as missing" if bad.any() else ""
        if is_target and whole and numbers.nunique() <= MAX_TARGET_CLASSES:
            return Inferred("category", f"whole numbers written as text, {distinct} distinct{note}")
        return Inferred("numeric", f"numbers written as text{note}")
    if not is_target and looks_like_dates(present):
        return Inferred("date", _DATES)
    if distinct <= MAX_CATEGORIES:
        return Inferred("category", f"text, {distinct} distinct values")
    if text.str.contains(" ", regex=False).mean() > 0.5:
        return Inferred("text", f"free text, {distinct} distinct values")
    return Inferred("category", f"text, {distinct} distinct values (more than {MAX_CATEGORIES})")


_DATES = "dates: the year, and the month, weekday, day of year and hour that vary, as cycles"


def _two_values(values: np.ndarray) -> bool:
    """Exactly two distinct values (NaN left out), without hashing every cell."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return False
    others = values[values != values[0]]
    return len(others) > 0 and bool((others == others[0]).all())


def _whole(values: np.ndarray) -> bool:
    """Every value a whole number; a sample of the first cells answers most columns of measurements."""
    head = values[:1000]
    if not bool((head % 1 == 0).all()):
        return False
    return bool((values % 1 == 0).all())


def looks_like_id(series: pd.Series) -> bool:
    """A column of whole numbers or text with a different value in every filled row (at least 20 rows, a few gaps allowed)."""
    if series.dtype == object and bool(series.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).any()):
        return False
    present = series[~is_missing(series)]
    if len(present) < 20 or len(present) < NUMERIC_SHARE * len(series):
        return False
    if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers, bad = parse_numbers(present)
        if bad.sum() <= (1 - NUMERIC_SHARE) * len(present):  # numbers written as text: prices are not ids
            present = numbers.dropna()
            if not bool((present % 1 == 0).all()):
                return False
    if pd.api.types.is_float_dtype(series) and not _whole(present.to_numpy(dtype="float64")):
        return False
    if pd.api.types.is_bool_dtype(series):
        return False
    return bool(present.nunique() == len(present))


MAX_NAME_WORDS = 4  # a unique text of a few words a row is a name (an id); longer ones are free text


def looks_like_names(series: pd.Series) -> bool:
    """Text that names each row (people, products, titles): a few words a cell, not sentences."""
    text = series.dropna().astype("string").head(2000)
    return bool(len(text)) and float(text.str.split().str.len().mean()) <= MAX_NAME_WORDS


def encoder_class(column: str, type_: str, options: dict[str, Any]) -> type[Encoder]:
    """The encoder for a column of type `type_`, its options checked."""
    if type_ not in ENCODERS.entries:
        raise DataError(
            f"column '{column}' holds {type_} values, which dltrain cannot encode yet: give it one of the "
            f"types {', '.join(ENCODERS.names())}, or leave it out of data.inputs"
        )
    encoder = ENCODERS.get(type_)
    unknown = [key for key in options if key not in encoder.options]
    if unknown:
        owners = [name for name, e in ENCODERS.entries.items() if unknown[0] in e.options]
        hint = f"; {unknown[0]} is an option of type {' or '.join(owners)}" if owners else ""
        raise DataError(
            f"column '{column}' is {type_}, which has no option {', '.join(unknown)} "
            f"(its options: {', '.join(encoder.options) or 'none'}){hint}"
        )
    check = getattr(encoder, "check_options", None)
    if check and (message := check(options)):
        raise DataError(f"column '{column}': {message}")
    return encoder


def fit_encoder(column: str, type_: str, series: pd.Series, options: dict[str, Any], on_error: str = "raise") -> Encoder:
    return encoder_class(column, type_, options).fit(column, series, options, on_error)


def _row(series: pd.Series, mask: pd.Series) -> int:
    """The 1-based data row (after the header) of the first row where `mask` holds."""
    label = series.index[int(np.flatnonzero(mask.to_numpy())[0])]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else label

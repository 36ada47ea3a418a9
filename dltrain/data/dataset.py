"""A config's data section -> encoded tensors per split, the fitted encoders and the task.

Reads the table, resolves which columns are inputs and which the target, splits the rows, fits
the encoders on the training rows, and encodes every split once into tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from dltrain.components import suggest
from dltrain.config.schema import ByColumn, Column, Data, Files
from dltrain.console import warn
from dltrain.data.encoders import (
    ENCODERS,
    MAX_CATEGORIES,
    CategoryEncoder,
    Encoder,
    NumericEncoder,
    encoder_from_dict,
    fit_encoder,
    infer_type,
    is_missing,
    keys,
    looks_like_id,
)
from dltrain.data.sources import FOLDER_TYPES, ResolvedSource, fingerprint, read_table
from dltrain.data.split import SPLITS, split_by_column, split_by_ratios
from dltrain.errors import DataError
from dltrain.model.builder import InputSpec
from dltrain.train.losses import BINARY, CLASSIFICATION, REGRESSION, LossEntry
from dltrain.train.task import Task

_TARGET_TYPES = {CLASSIFICATION: ("category", "binary"), BINARY: ("binary",), REGRESSION: ("numeric",)}


@dataclass
class DataSchema:
    """Everything needed to encode new rows as training did: saved in every checkpoint as plain data."""

    inputs: list[Encoder]
    target: Encoder
    id: str | None = None
    cache: bool = True  # decoded files (images) cached on disk
    on_error: str = "raise"  # or "skip": unreadable files are left out with a warning

    @property
    def input_columns(self) -> list[str]:
        return [e.column for e in self.inputs]

    @property
    def media(self):
        """The one input that is not a table column (an image column), if any."""
        return next((e for e in self.inputs if not e.tabular), None)

    def input_spec(self) -> InputSpec:
        if self.media is not None:
            return InputSpec(self.media.shape, self.media.dtype, self.media.vocab_size)
        return InputSpec((sum(e.width for e in self.inputs),))

    def encode_inputs(self, table: pd.DataFrame, label: str, new: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """What the model takes for each row, and which rows could be encoded (unreadable files skipped).

        `new`: data from outside the run (predict, evaluate --data): values that training never saw
        are counted in a warning, since the model reads them as unknown.
        """
        missing = [c for c in self.input_columns if c not in table.columns]
        if missing:
            raise DataError(
                f"{label}: the model needs column(s) {', '.join(missing)}, which are not in it. "
                f"Its columns: {', '.join(table.columns)}"
            )
        if self.media is not None:
            return self.media.encode(table[self.media.column], self.cache, self.on_error)
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
        x = torch.cat([e.transform(table[e.column]) for e in self.inputs], dim=1)
        return x, np.ones(len(table), dtype=bool)

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


def encode_target(encoder: Encoder, series: pd.Series, loss: LossEntry) -> tuple[torch.Tensor, np.ndarray]:
    """The target as the loss wants it, and a mask of the rows whose value the encoder knows."""
    if isinstance(encoder, NumericEncoder):
        return encoder.numbers(series).unsqueeze(1), series.notna().to_numpy()
    codes = encoder.codes(series)
    known = codes >= 0
    codes = np.where(known, codes, 0)
    if loss.task == BINARY:
        return torch.from_numpy(codes).float().unsqueeze(1), known
    return torch.from_numpy(codes), known


def make_task(loss: LossEntry, target: Encoder) -> Task:
    if isinstance(target, NumericEncoder):
        return Task(loss, "numeric", (), target.mean, target.std)
    return Task(loss, target.type, tuple(target.classes))


@dataclass
class SplitData:
    x: torch.Tensor | None  # None when the split is streamed from disk
    y: torch.Tensor
    rows: np.ndarray  # row indices in the source table
    stream: object = None  # a TableStream or FileStream (data.in_memory: false)


@dataclass
class ColumnReport:
    """A line of check's column table."""

    name: str
    role: str  # input, target, id, split, ignored
    type: str
    how: str  # "given", or why it was inferred
    missing: int = 0  # values filled (inputs) or rows dropped (target)
    detail: str = ""


@dataclass
class Prepared:
    splits: dict[str, SplitData]
    schema: DataSchema
    task: Task
    info: dict  # what data.json holds
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def input_spec(self) -> InputSpec:
        return self.schema.input_spec()


Resolve = Callable[[Any, tuple], ResolvedSource]


def read_sources(data: Data, resolve: Resolve) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray] | None]:
    """The whole table, a description of where it came from, and the split when files give it."""
    if isinstance(data.split, Files):
        frames, described, offsets = [], {}, {}
        start = 0
        for name in SPLITS:
            given = getattr(data.split, name)
            if given is None:
                continue
            source = resolve(given, ("data", "split", name))
            frame = read_table(source)
            frames.append(frame)
            described[name] = source.to_dict()
            offsets[name] = np.arange(start, start + len(frame))
            start += len(frame)
        columns = list(frames[0].columns)
        for name, frame in zip(described, frames):
            if set(frame.columns) != set(columns):
                raise DataError(
                    f"{described[name].get('path')}: its columns ({', '.join(frame.columns)}) differ from the "
                    f"train file's ({', '.join(columns)})",
                    key=("data", "split", name),
                )
        table = pd.concat(frames, ignore_index=True)
        return table, {"files": described}, offsets
    source = resolve(data.source, ("data", "source"))
    return read_table(source), source.to_dict(), None


def prepare(data: Data, loss: LossEntry, seed: int, resolve: Resolve) -> Prepared:
    """Read, split, fit encoders on train, encode every split."""
    table, described, file_splits = read_sources(data, resolve)
    label = _label(described)
    reports: list[ColumnReport] = []
    labels = LabelsAndSplit.make(data, table, described, file_splits, loss, seed, label, reports)
    input_plan = _inputs(data, table, labels.target_column, labels.split_column, reports, label)
    train_rows = table.iloc[labels.rows["train"]]
    encoders = [
        fit_encoder(name, type_, train_rows[name], options, data.on_error) for name, type_, options in input_plan
    ]
    schema = _schema(data, encoders, labels.target, reports, label)

    splits: dict[str, SplitData] = {}
    skipped = 0
    for name, (y, indices) in labels.targets(table[labels.target_column], loss).items():  # train first
        x, readable = schema.encode_inputs(table.iloc[indices], label)
        if not readable.all():
            skipped += int((~readable).sum())
            y, indices = y[torch.from_numpy(readable)], indices[readable]
        if name == "train" and schema.media is not None:
            schema.media.fit_encoded(x)  # its images give the normalization
        splits[name] = SplitData(x, y, indices)
    _count_missing(reports, table, labels.rows)
    return Prepared(splits, schema, labels.task, labels.info(described, fingerprint(table), splits, skipped), reports)


@dataclass
class LabelsAndSplit:
    """The target column's encoder and the rows of each split: what in-memory and streaming data share."""

    target_column: str
    split_column: str | None
    target: Encoder
    task: Task
    rows: dict[str, np.ndarray]
    dropped: int
    unseen: int = 0

    @classmethod
    def make(cls, data: Data, labels: pd.DataFrame, described: dict, file_splits, loss: LossEntry, seed: int, label: str, reports: list) -> LabelsAndSplit:
        """`labels` holds the target column (and the split column), for every row of the data."""
        # a folder of class subfolders has its classes in `label`
        target_column = _column_name(data.target) or ("label" if described.get("type") in FOLDER_TYPES else None)
        _require_column(labels, target_column, ("data", "target"), label)
        # rows without a target cannot be learned from or scored
        has_target = keys(labels[target_column]).notna().to_numpy()
        dropped = int((~has_target).sum())
        if not has_target.any():
            raise DataError(f"column '{target_column}', the target, is empty in every row of {label}: give a column that holds what to predict", key=("data", "target"))
        if dropped:
            warn(f"{dropped} row(s) of {label} have no value in target column '{target_column}': dropped")
        target_type, how = _target_type(data.target, labels[target_column][has_target], loss, label)
        split_column = data.split.column if isinstance(data.split, ByColumn) else None
        if split_column is not None:
            _require_column(labels, split_column, ("data", "split", "column"), label)
            by_column = split_by_column(labels[split_column], split_column)
            rows = {s: r[has_target[r]] for s, r in by_column.items()}
        elif file_splits is not None:
            rows = {s: r[has_target[r]] for s, r in file_splits.items()}
        else:
            kept = np.flatnonzero(has_target)
            strata = keys(labels[target_column].iloc[kept]).reset_index(drop=True) if target_type in ("category", "binary") else None
            local = split_by_ratios(len(kept), data.split.model_dump(), seed, strata)
            rows = {s: kept[r] for s, r in local.items()}
        if len(rows.get("train", [])) == 0:
            raise DataError(f"{label}: no rows left for training", key=("data", "split"))
        train_values = labels[target_column].iloc[rows["train"]]
        target = fit_encoder(target_column, target_type, train_values, _options(data.target))
        if isinstance(target, CategoryEncoder) and len(target.classes) < 2:
            raise DataError(
                f"target column '{target_column}' has one class in the training rows ({target.classes[0]!r}); "
                "a classifier needs at least two",
                key=("data", "target"),
            )
        task = make_task(loss, target)
        detail = f"classes: {', '.join(task.classes)}" if task.classes else f"mean {target.mean:.4g}, std {target.std:.4g}"
        reports.append(ColumnReport(target_column, "target", target_type, how, dropped, detail))
        return cls(target_column, split_column, target, task, rows, dropped)

    def targets(self, values: pd.Series, loss: LossEntry) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        """Each split's encoded targets and row indices; rows whose class training never saw are dropped."""
        out = {}
        for name, indices in self.rows.items():
            part = values.iloc[indices]
            y, known = encode_target(self.target, part, loss)
            if not known.all():
                unseen = sorted(set(keys(part[~known]).dropna()))
                self.unseen += int((~known).sum())
                warn(
                    f"{int((~known).sum())} row(s) of the {name} split have target values never seen in training "
                    f"({', '.join(unseen[:5])}): dropped"
                )
                y, indices = y[torch.from_numpy(known)], indices[known]
            out[name] = (y, indices)
        return out

    def info(self, described: dict, fingerprint: str, splits: dict, skipped: int) -> dict:
        """What data.json holds."""
        return {
            "source": described,
            "fingerprint": fingerprint,
            "rows": {name: len(s.rows) for name, s in splits.items()},
            "dropped": {"missing_target": self.dropped, "unseen_target": self.unseen, "unreadable": skipped},
            # tensors: 8 bytes a row in memory and in checkpoints; data.json writes them as lists
            "indices": {name: torch.from_numpy(np.asarray(s.rows, dtype=np.int64)) for name, s in splits.items()},
        }


def _schema(data: Data, encoders: list, target: Encoder, reports: list, label: str) -> DataSchema:
    for report in reports:
        encoder = next((e for e in encoders if e.column == report.name), None)
        if isinstance(encoder, CategoryEncoder):
            report.detail = f"{' / '.join(encoder.classes[:6])}{' / ...' if len(encoder.classes) > 6 else ''}"
        elif encoder is not None and not encoder.tabular:
            report.detail = encoder.describe()
    if not encoders:
        raise DataError(f"{label}: no input columns are left: list them in data.inputs", key=("data", "inputs"))
    return DataSchema(encoders, target, data.id, data.cache, data.on_error)


def _label(described: dict) -> str:
    if "files" in described:
        return described["files"]["train"].get("path", "the train file")
    return described.get("path") or f"{described.get('url')} ({described.get('query')})"


def _column_name(column: str | Column | None) -> str | None:
    return column.column if isinstance(column, Column) else column


def _options(column: str | Column | None) -> dict:
    return dict(column.model_extra or {}) if isinstance(column, Column) else {}


def _require_column(table: pd.DataFrame, name: str, key: tuple, label: str) -> None:
    if name not in table.columns:
        columns = [str(c) for c in table.columns]
        raise DataError(
            f"column '{name}' is not in {label}.{suggest(name, columns)} Its columns: {', '.join(columns)}",
            key=key,
        )


def _target_type(target: str | Column, series: pd.Series, loss: LossEntry, label: str) -> tuple[str, str]:
    given = target.type if isinstance(target, Column) else None
    name = _column_name(target)
    if given is not None:
        type_, how = given, "given"
    else:
        inferred = infer_type(series, is_target=True)
        type_, how = inferred.type, inferred.reason
    allowed = _TARGET_TYPES[loss.task]
    if type_ in allowed:
        return type_, how
    distinct = keys(series).nunique()
    found = f"target '{name}' is {type_} ({how if given is None else 'as given'}, {distinct} distinct values)"
    if loss.task == REGRESSION:
        fix = (
            "use CrossEntropyLoss (cross_entropy) to predict classes"
            + (", or BCEWithLogitsLoss for two" if distinct == 2 else "")
            + (f", or give target: {{column: {name}, type: numeric}} if its values are amounts" if given is None else "")
        )
    elif loss.task == BINARY:
        fix = (
            f"BCEWithLogitsLoss and BCELoss are for two classes: use CrossEntropyLoss (cross_entropy) for {distinct}"
            if type_ == "category"
            else "use MSELoss (mse) to predict a number"
        )
    else:
        fix = "use MSELoss (mse) or L1Loss (mae) to predict a number" + (
            f", or give target: {{column: {name}, type: category}} if its values are classes" if given is None else ""
        )
    raise DataError(f"{loss.name} does not fit: {found}. {fix}", key=("loss",))


def _inputs(data: Data, table: pd.DataFrame, target: str, split_column: str | None, reports, label):
    """(column, type, options) of each input, given or inferred; a media column must be the only one."""
    plan = _input_plan(data, table, target, split_column, reports, label)
    media = [name for name, type_, _ in plan if not ENCODERS.get(type_).tabular] if plan else []
    if media and len(plan) > 1:
        others = [name for name, _, _ in plan if name != media[0]]
        raise DataError(
            f"column '{media[0]}' holds {dict((n, t) for n, t, _ in plan)[media[0]]} data, which must be the only "
            f"input: an nn.Sequential takes one tensor, and images and table columns do not fit in one. Drop "
            f"{', '.join(others)} (give data.inputs: [{media[0]}]), or drop {media[0]} to train on the others",
            key=("data", "inputs"),
        )
    return plan


def _input_plan(data: Data, table: pd.DataFrame, target: str, split_column: str | None, reports, label):
    plan = []
    reserved = {target, split_column, data.id} - {None}
    if data.id is not None:
        _require_column(table, data.id, ("data", "id"), label)
        reports.append(ColumnReport(data.id, "id", "-", "given"))
    if split_column is not None:
        reports.append(ColumnReport(split_column, "split", "-", "given"))
    if data.inputs is not None:
        for index, item in enumerate(data.inputs):
            name = _column_name(item)
            _require_column(table, name, ("data", "inputs", index), label)
            if name in reserved:
                raise DataError(f"column '{name}' cannot be an input: it is the target, split or id column", key=("data", "inputs", index))
            given = item.type if isinstance(item, Column) else None
            inferred = infer_type(table[name], is_target=False)
            type_ = given or inferred.type
            plan.append((name, type_, _options(item)))
            reports.append(ColumnReport(name, "input", type_, "given" if given else inferred.reason))
        return plan
    for name in table.columns:
        if name in reserved:
            continue
        series = table[name]
        if series.isna().all():
            warn(f"column '{name}' is empty: left out of the inputs")
            reports.append(ColumnReport(name, "ignored", "-", "empty"))
            continue
        inferred = infer_type(series, is_target=False)
        # file paths differ in every row by nature; other such columns are ids
        media = inferred.type in ENCODERS.entries and not ENCODERS.get(inferred.type).tabular
        if not media and looks_like_id(series):
            warn(
                f"column '{name}' has a different value in every row, so it looks like an id: left out of the "
                f"inputs (list it in data.inputs to use it, or set data.id: {name} to copy it into predictions)"
            )
            reports.append(ColumnReport(name, "ignored", "-", "looks like an id"))
            continue
        if inferred.type not in ENCODERS.entries:
            warn(f"column '{name}' looks like {inferred.type} ({inferred.reason}), which cannot be mixed with table columns: left out")
            reports.append(ColumnReport(name, "ignored", inferred.type, inferred.reason))
            continue
        if inferred.type == "category" and (distinct := keys(series).nunique()) > MAX_CATEGORIES:
            warn(
                f"column '{name}' has {distinct} distinct values: one-hot adds {distinct + 1} features, which overfit "
                f"unless there are many rows per value; if it is a name, a date or a code, list the other columns in data.inputs"
            )
        plan.append((name, inferred.type, {}))
        reports.append(ColumnReport(name, "input", inferred.type, inferred.reason))
    return plan


def _count_missing(reports: list[ColumnReport], table: pd.DataFrame, rows: dict[str, np.ndarray]) -> None:
    used = np.concatenate(list(rows.values()))
    for report in reports:
        if report.role == "input":
            report.missing = int(is_missing(table[report.name].iloc[used]).sum())


def read_recorded(info: dict) -> pd.DataFrame:
    """The table a run was trained on, read again from the sources its data.json records."""
    source = info["source"]
    if "files" in source:
        frames = [read_table(ResolvedSource.from_dict(source["files"][name])) for name in SPLITS if name in source["files"]]
        table = pd.concat(frames, ignore_index=True)
    else:
        table = read_table(ResolvedSource.from_dict(source))
    if fingerprint(table) != info["fingerprint"]:
        warn(
            f"the data of this run changed since it was trained ({_label(source)}): the recorded rows of each "
            "split are used, but they may not hold what they held then"
        )
    return table


def rebuild(info: dict, schema: DataSchema, loss: LossEntry, names: tuple[str, ...]) -> dict[str, SplitData]:
    """The splits `names` of a run, encoded with its own encoders: for evaluate and --resume."""
    table = read_recorded(info)
    target = schema.target.column
    splits = {}
    for name in names:
        indices = np.asarray(info["indices"].get(name, []), dtype=np.int64)
        if len(indices) and indices.max() >= len(table):
            raise DataError(
                f"the {name} split of this run has rows up to {int(indices.max())}, but {_label(info['source'])} "
                f"now has {len(table)} rows: the data changed; evaluate it with --data FILE instead"
            )
        part = table.iloc[indices]
        if target not in part.columns:
            raise DataError(f"{_label(info['source'])} has no column '{target}' any more")
        y, known = encode_target(schema.target, part[target], loss)
        if not known.all():
            part, y, indices = part[known], y[torch.from_numpy(known)], indices[known]
        x, readable = schema.encode_inputs(part, _label(info["source"]))
        splits[name] = SplitData(x, y[torch.from_numpy(readable)], indices[readable])
    return splits

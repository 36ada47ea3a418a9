"""A data spec -> the splits as batches, the fitted encoders, and what data.json records.

One path for every kind of data: read the target (and split) column of every row, split the
rows, infer or take each input column's type, fit the encoders on the training rows in one pass
over the table (chunk by chunk when it is streamed; the whole table is one chunk in memory), then
encode every split once into tensors (in memory) or hand it to a stream that encodes as it reads.
`rebuild` makes the same splits again from what a run recorded (evaluate, --resume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dltrain.components import suggest
from dltrain.console import warn
from dltrain.data.batches import FileStream, TableStream, TensorSplit, _members, fit_statistics
from dltrain.data.encoders import (
    ENCODERS,
    MAX_CATEGORIES,
    CategoryEncoder,
    Encoder,
    Inferred,
    NumericEncoder,
    encoder_class,
    fit_encoder,
    infer_type,
    is_missing,
    keys,
    looks_like_id,
    looks_like_names,
    tabular_types,
)
from dltrain.data.media import FileColumn, path_list
from dltrain.data.schema import DataSchema, encode_target
from dltrain.data.sources import Fingerprint, ResolvedSource, sql_order
from dltrain.data.split import split_by_column, split_by_ratios
from dltrain.data.tables import ChunkedTable, WholeTable, fingerprint, open_table, split_file_fingerprints
from dltrain.errors import DataError
from dltrain.task import STANDARDIZED, TARGET_TYPES, ZERO_ONE, InputSpec


@dataclass(frozen=True)
class Column:
    """A column named in the config, with its type when given and the type's options."""

    name: str
    type: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """The data section as plain values, its sources resolved: all that `prepare` reads."""

    sources: dict[str, ResolvedSource]  # {"": the source}, or {"train": ..., "val": ..., "test": ...}
    target: Column  # a folder of class subfolders: the `label` column dltrain makes
    inputs: list[Column] | None = None  # None: every column but the target, the split column and the id
    id: str | None = None
    ratios: dict[str, float] | None = None  # {train, val, test}; None when a column or the files split the rows
    split_column: str | None = None
    seed: int = 0
    in_memory: bool = True
    cache: bool = True
    on_error: str = "raise"


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
    splits: dict[str, TensorSplit | TableStream | FileStream]  # train first, then val and test where they have rows
    schema: DataSchema
    info: dict  # what data.json holds
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def input_spec(self) -> InputSpec:
        return self.schema.input_spec()


def prepare(spec: DataSpec, loss: str, form: str) -> Prepared:
    """Read, split, fit the encoders on the training rows, and make each split's batches.

    `loss` names the loss in messages; `form` is the target tensor it takes (dltrain.task).
    """
    table = open_table(spec.sources, spec.in_memory)
    fixed = _fixed_types(spec)
    if spec.target.type is None and fixed.get(spec.target.name) in ("category", "binary"):
        spec = replace(spec, target=replace(spec.target, type=fixed[spec.target.name]))
    label, sample = table.label, table.sample()
    _require_column(sample, spec.target.name, ("data", "target"), label)
    if spec.split_column is not None:
        _require_column(sample, spec.split_column, ("data", "split", "column"), label)
    reports: list[ColumnReport] = []
    labels = table.columns([c for c in (spec.target.name, spec.split_column) if c is not None])
    split = LabelsAndSplit.make(spec, labels, table.file_rows(), loss, form, label, reports)
    plan = _inputs(spec, sample, reports, label, fixed)
    encoders, digest = _fit_inputs(plan, table, split.rows, reports, spec.on_error, spec.cache)
    schema = _schema(spec, encoders, split.target, reports, label)
    splits, skipped = make_splits(table, schema, split.targets(labels[spec.target.name], form))
    files = None
    if schema.files is not None:
        fit_statistics(schema.files, splits["train"])  # the training files give the normalization
        files = split_file_fingerprints(table, schema.files.column, {name: s.rows for name, s in splits.items()})
    return Prepared(splits, schema, split.info(spec.sources, digest, files, splits, skipped), reports)


def make_splits(table: WholeTable | ChunkedTable, schema: DataSchema, targets: dict[str, tuple[torch.Tensor, np.ndarray]]) -> tuple[dict, int]:
    """Each split's batches from its targets and rows: tensors encoded now, or streams; and the
    count of rows left out because their files could not be read (data.on_error: skip)."""
    splits: dict = {}
    skipped = 0
    if isinstance(table, WholeTable):
        for name, (y, indices) in targets.items():
            x, readable = schema.encode_inputs(table.rows(indices), table.label)
            if not readable.all():
                skipped += int((~readable).sum())
                y, indices = y[torch.from_numpy(readable)], indices[readable]
            splits[name] = TensorSplit(x, y, indices)
        return splits, skipped
    files = schema.files
    paths = table.columns([files.column])[files.column] if files is not None else None
    for name, (y, indices) in targets.items():
        order = np.argsort(indices, kind="stable")  # streams read rows in file order
        y, indices = y[torch.from_numpy(order)], indices[order]
        if files is not None:
            splits[name] = FileStream(files, path_list(paths.iloc[indices]), y, indices, schema.on_error)
        else:
            splits[name] = TableStream(table, indices, y, schema, table.label)
    return splits, skipped


FINGERPRINT_VERSION = 2  # 1: the table's rows alone; 2: also the bytes of the files a file column names, per split


def rebuild(info: dict, schema: DataSchema, form: str, names: tuple[str, ...], in_memory: bool = True, changed: Callable[[str], None] | None = None) -> dict:
    """The splits `names` of a run, from the sources and rows its data.json records, encoded with its
    own encoders (evaluate on its test split, --resume).

    `changed(what)` is called, with what differs, when the data's content is not what the run trained
    on: the table's rows, or (runs that recorded them) the bytes of the files of these splits.
    """
    table = open_table(_current(recorded_sources(info)), in_memory)
    recorded = {name: np.asarray(info["indices"].get(name, []), dtype=np.int64) for name in names}
    if changed is not None and (what := _what_changed(info, table, schema, recorded)) is not None:
        changed(what)
    return make_splits(table, schema, _targets(table, schema, form, recorded))[0]


def split_targets(info: dict, schema: DataSchema, form: str, name: str) -> torch.Tensor:
    """The encoded targets of one split of a run, read from its target column alone (no inputs
    decoded): what a baseline that ignores the inputs needs."""
    table = open_table(_current(recorded_sources(info)), False)
    recorded = {name: np.asarray(info["indices"].get(name, []), dtype=np.int64)}
    return _targets(table, schema, form, recorded)[name][0]


def _targets(table: WholeTable | ChunkedTable, schema: DataSchema, form: str, recorded: dict[str, np.ndarray]) -> dict:
    target = schema.target.column
    labels = table.columns([target])
    if target not in labels.columns:
        raise DataError(f"{table.label} has no column '{target}' any more")
    targets = {}
    for name, indices in recorded.items():
        if len(indices) and indices.max() >= len(labels):
            raise DataError(
                f"the {name} split of this run has rows up to {int(indices.max())}, but {table.label} "
                f"now has {len(labels)} rows: the data changed and those rows are gone. Put the data the run "
                "was trained on back, or evaluate a table that has the target column with --data FILE"
            )
        y, known = encode_target(schema.target, labels[target].iloc[indices], form)
        targets[name] = (y[torch.from_numpy(np.array(known, dtype=bool))], indices[known])
    return targets


def _what_changed(info: dict, table: WholeTable | ChunkedTable, schema: DataSchema, indices: dict[str, np.ndarray]) -> str | None:
    """What differs from the data a run trained on, in words; None when nothing does."""
    now = fingerprint(table)
    if now.result() != info["fingerprint"]:
        then = info.get("table_rows")
        if then is None:
            counts = f"{now.rows} rows now"
        elif then != now.rows:
            counts = f"{now.rows} rows now, {then} when it was trained: rows were added or removed"
        else:
            counts = f"{now.rows} rows, as then, but other values or another order: a split's recorded rows are other rows now"
        return f"{table.label} has other content now ({counts})"
    recorded = info.get("file_fingerprints") if info.get("fingerprint_version", 1) >= 2 else None
    files = schema.files
    if not recorded or files is None:
        return None
    wanted = {name: rows for name, rows in indices.items() if name in recorded and len(rows) and rows.max() < now.rows}
    differ = [name for name, digest in split_file_fingerprints(table, files.column, wanted).items() if digest != recorded[name]]
    if not differ:
        return None
    return (
        f"the {files.type} files of the {' and '.join(differ)} split{'s' if len(differ) > 1 else ''} (column "
        f"'{files.column}' of {table.label}) have other content now, under the same names: rewritten, replaced "
        "or removed since it was trained"
    )


def recorded_sources(info: dict) -> dict[str, ResolvedSource]:
    """The sources a run's data.json records, as open_table takes them (an sql source of a run
    recorded before dltrain imposed an order is read in the order it was read then)."""
    described = info["source"]
    if "files" in described:
        return {name: _recorded(d) for name, d in described["files"].items()}
    return {"": _recorded(described)}


def _current(sources: dict[str, ResolvedSource]) -> dict[str, ResolvedSource]:
    """Recorded sources read from urls (s3://, https://), with their objects' identities as they are
    now: they are fetched again (from the cache where unchanged), and the fingerprint says what changed."""
    from dltrain.data.remote import current

    return {name: current(source) for name, source in sources.items()}


def _recorded(described: dict) -> ResolvedSource:
    source = ResolvedSource.from_dict(described)
    if source.type == "sql" and source.order is None:
        return replace(source, order="query")
    return source


def missing_files(info: dict) -> list[str]:
    """The files and folders a run's data.json records that are not on this machine (any more)."""
    return [path for source in recorded_sources(info).values() for path in source.files() if not Path(path).exists()]


def _described(sources: dict[str, ResolvedSource]) -> dict:
    """open_table's sources as data.json records them: an sql source with the order its rows were read in."""

    def described(source: ResolvedSource) -> dict:
        return {**source.to_dict(), "order": sql_order(source)} if source.type == "sql" else source.to_dict()

    if "" in sources:
        return described(sources[""])
    return {"files": {name: described(source) for name, source in sources.items()}}


@dataclass
class LabelsAndSplit:
    """The target column's encoder and the rows of each split."""

    target: Encoder
    rows: dict[str, np.ndarray]
    dropped: int
    unseen: int = 0

    @classmethod
    def make(cls, spec: DataSpec, labels: pd.DataFrame, file_rows: dict | None, loss: str, form: str, label: str, reports: list) -> LabelsAndSplit:
        """`labels` holds the target column (and the split column), for every row of the data."""
        name = spec.target.name
        # rows without a target cannot be learned from or scored
        has_target = keys(labels[name]).notna().to_numpy()
        dropped = int((~has_target).sum())
        if not has_target.any():
            raise DataError(f"column '{name}', the target, is empty in every row of {label}: give a column that holds what to predict", key=("data", "target"))
        if dropped:
            warn(f"{dropped} row(s) of {label} have no value in target column '{name}': dropped")
        target_type, how = _target_type(spec.target, labels[name][has_target], loss, form)
        if spec.split_column is not None:
            by_column = split_by_column(labels[spec.split_column], spec.split_column)
            rows = {s: r[has_target[r]] for s, r in by_column.items()}
        elif file_rows is not None:
            rows = {s: r[has_target[r]] for s, r in file_rows.items()}
        else:
            kept = np.flatnonzero(has_target)
            strata = keys(labels[name].iloc[kept]).reset_index(drop=True) if target_type in ("category", "binary") else None
            local = split_by_ratios(len(kept), spec.ratios, spec.seed, strata)
            rows = {s: kept[r] for s, r in local.items()}
        if len(rows.get("train", [])) == 0:
            raise DataError(f"{label}: no rows left for training", key=("data", "split"))
        target = fit_encoder(name, target_type, labels[name].iloc[rows["train"]], spec.target.options)
        if isinstance(target, CategoryEncoder) and len(target.classes) < 2:
            raise DataError(
                f"target column '{name}' has one class in the training rows ({target.classes[0]!r}); "
                "a classifier needs at least two",
                key=("data", "target"),
            )
        if isinstance(target, CategoryEncoder):
            detail = f"classes: {', '.join(target.classes)}"
        else:
            detail = f"mean {target.mean:.4g}, std {target.std:.4g}"
            if target.transform_kind == "quantile":
                detail = f"quantile: normal scores of {len(target.quantiles)} training quantiles"
            elif target.transform_kind == "log":
                detail = f"log, then {detail}"
        reports.append(ColumnReport(name, "target", target_type, how, dropped, detail))
        return cls(target, rows, dropped)

    def targets(self, values: pd.Series, form: str) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        """Each split's encoded targets and row indices; rows whose class training never saw are dropped."""
        out = {}
        for name, indices in self.rows.items():
            part = values.iloc[indices]
            y, known = encode_target(self.target, part, form)
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

    def info(self, sources: dict[str, ResolvedSource], digest: Fingerprint, files: dict[str, str] | None, splits: dict, skipped: int) -> dict:
        """What data.json holds. `files`: the hash of each split's files, where the input is a file column."""
        info = {
            "source": _described(sources),
            "fingerprint": digest.result(),
            "fingerprint_version": FINGERPRINT_VERSION,
            "table_rows": digest.rows,
            "rows": {name: len(s) for name, s in splits.items()},
            "dropped": {"missing_target": self.dropped, "unseen_target": self.unseen, "unreadable": skipped},
            # tensors: 8 bytes a row in memory and in checkpoints; data.json writes them as lists
            "indices": {name: torch.from_numpy(np.asarray(s.rows, dtype=np.int64)) for name, s in splits.items()},
        }
        if files is not None:
            info["file_fingerprints"] = files
        return info


def _fit_inputs(
    plan: list[tuple[str, str, dict]], table, rows: dict[str, np.ndarray], reports: list[ColumnReport], on_error: str, use_cache: bool = True
) -> tuple[list[Encoder], Fingerprint]:
    """One pass over the table: each input encoder accumulates the training rows of each chunk, the
    missing values of the rows in use are counted, and the content is hashed (data.json's fingerprint).
    `use_cache`: file columns may read their files' headers from the cache (data.cache)."""
    classes = [(name, encoder_class(name, type_, options), options) for name, type_, options in plan]
    states = [cls.fit_state() for _, cls, _ in classes]
    names = [name for name, _, _ in plan]
    train = np.sort(rows["train"])
    used = np.sort(np.concatenate(list(rows.values())))
    missing = dict.fromkeys(names, 0)
    hashing = None
    for chunk in table.chunks():
        hashing = hashing or Fingerprint(list(chunk.columns))
        hashing.add(chunk)
        index = chunk.index.to_numpy()
        part = chunk.loc[_members(index, train), names]
        for (name, cls, options), state in zip(classes, states):
            cls.fit_update(state, name, part[name], options)
        in_use = _members(index, used)
        for name in names:
            missing[name] += int(is_missing(chunk[name][in_use]).sum())
    for report in reports:
        if report.role == "input":
            report.missing = missing[report.name]
    encoders = [
        cls.fit_finish(name, state, options, on_error, use_cache) if issubclass(cls, FileColumn) else cls.fit_finish(name, state, options, on_error)
        for (name, cls, options), state in zip(classes, states)
    ]
    return encoders, hashing


def _schema(spec: DataSpec, encoders: list, target: Encoder, reports: list, label: str) -> DataSchema:
    for report in reports:
        encoder = next((e for e in encoders if e.column == report.name), None)
        if isinstance(encoder, CategoryEncoder):
            report.detail = f"{' / '.join(encoder.classes[:6])}{' / ...' if len(encoder.classes) > 6 else ''}"
        elif encoder is not None and (not encoder.tabular or isinstance(encoder, NumericEncoder)):
            report.detail = encoder.describe()
    if not encoders:
        raise DataError(f"{label}: no input columns are left: list them in data.inputs", key=("data", "inputs"))
    return DataSchema(encoders, target, spec.id, spec.cache, spec.on_error)


def _require_column(table: pd.DataFrame, name: str, key: tuple, label: str) -> None:
    if name not in table.columns:
        columns = [str(c) for c in table.columns]
        raise DataError(
            f"column '{name}' is not in {label}.{suggest(name, columns)} Its columns: {', '.join(columns)}",
            key=key,
        )


def _target_type(target: Column, series: pd.Series, loss: str, form: str) -> tuple[str, str]:
    given, name = target.type, target.name
    if given is not None:
        type_, how = given, "given"
    else:
        inferred = infer_type(series, is_target=True)
        type_, how = inferred.type, inferred.reason
    if type_ in TARGET_TYPES[form]:
        return type_, how
    distinct = keys(series).nunique()
    why = how if given is None else "as given"
    count = "" if "distinct" in why else f", {distinct} distinct values"  # the inferred reason may count them already
    found = f"target '{name}' is {type_} ({why}{count})"
    if form == STANDARDIZED:
        fix = (
            "use CrossEntropyLoss (cross_entropy) to predict classes"
            + (", or BCEWithLogitsLoss for two" if distinct == 2 else "")
            + (f", or give target: {{column: {name}, type: numeric}} if its values are amounts" if given is None else "")
        )
    elif form == ZERO_ONE:
        fix = (
            f"BCEWithLogitsLoss and BCELoss are for two classes: use CrossEntropyLoss (cross_entropy) for {distinct}"
            if type_ == "category"
            else "use MSELoss (mse) to predict a number"
        )
    else:
        fix = "use MSELoss (mse) or L1Loss (mae) to predict a number" + (
            f", or give target: {{column: {name}, type: category}} if its values are classes" if given is None else ""
        )
    raise DataError(f"{loss} does not fit: {found}. {fix}", key=("loss",))


_FIXED = Inferred("-", "the dataset's feature")


def _fixed_types(spec: DataSpec) -> dict[str, str]:
    """The column types a source's own schema fixes: a Hugging Face dataset's features (a ClassLabel,
    an Image, a list of numbers); a target whose feature cannot be one is a DataError here."""
    fixed: dict[str, str] = {}
    for source in spec.sources.values():
        if source.type == "huggingface":
            from dltrain.data.huggingface import check_target, column_types

            check_target(source, spec.target.name)
            fixed.update({name: type_ for name, type_ in column_types(source).items() if type_})
    return fixed


def _inputs(spec: DataSpec, table: pd.DataFrame, reports: list, label: str, fixed: dict | None = None) -> list[tuple[str, str, dict]]:
    """(column, type, options) of each input, given or inferred; a media column must be the only one."""
    plan = _input_plan(spec, table, reports, label, fixed or {})
    media = [name for name, type_, _ in plan if type_ in ENCODERS.entries and not ENCODERS.get(type_).tabular]
    if media and len(plan) > 1:
        others = [name for name, _, _ in plan if name != media[0]]
        raise DataError(
            f"column '{media[0]}' holds {dict((n, t) for n, t, _ in plan)[media[0]]} data, which must be the only "
            f"input: an nn.Sequential takes one tensor, and images and table columns do not fit in one. Drop "
            f"{', '.join(others)} (give data.inputs: [{media[0]}]), or drop {media[0]} to train on the others",
            key=("data", "inputs"),
        )
    return plan


def _input_plan(spec: DataSpec, table: pd.DataFrame, reports: list, label: str, fixed: dict) -> list[tuple[str, str, dict]]:
    plan = []
    reserved = {spec.target.name, spec.split_column, spec.id} - {None}
    if spec.id is not None:
        _require_column(table, spec.id, ("data", "id"), label)
        reports.append(ColumnReport(spec.id, "id", "-", "given"))
    if spec.split_column is not None:
        reports.append(ColumnReport(spec.split_column, "split", "-", "given"))
    if spec.inputs is not None:
        for index, column in enumerate(spec.inputs):
            _require_column(table, column.name, ("data", "inputs", index), label)
            if column.name in reserved:
                raise DataError(f"column '{column.name}' cannot be an input: it is the target, split or id column", key=("data", "inputs", index))
            inferred = _FIXED if column.name in fixed else infer_type(table[column.name], is_target=False)
            type_ = column.type or fixed.get(column.name) or inferred.type
            plan.append((column.name, type_, column.options))
            reports.append(ColumnReport(column.name, "input", type_, "given" if column.type else inferred.reason))
        return plan
    unique_text = []
    for name in table.columns:
        if name in reserved:
            continue
        series = table[name]
        if series.isna().all():
            warn(f"column '{name}' is empty: left out of the inputs")
            reports.append(ColumnReport(name, "ignored", "-", "empty"))
            continue
        if name in fixed:  # the dataset's own feature says it: no inference, no id guess
            plan.append((name, fixed[name], {}))
            reports.append(ColumnReport(name, "input", fixed[name], _FIXED.reason))
            continue
        inferred = infer_type(series, is_target=False)
        # file paths differ in every row by nature; other such columns are ids
        media = inferred.type in ENCODERS.entries and not ENCODERS.get(inferred.type).tabular
        named = inferred.type == "text" and looks_like_names(series)  # a unique name a row: an id, not text to read
        if inferred.type == "text" and not named and looks_like_id(series):
            unique_text.append((name, inferred))  # sentences in every row: the text input, or an id beside table columns
            continue
        if (named or not media) and inferred.type != "date" and looks_like_id(series):
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
    tabular = set(tabular_types())
    beside_table = any(type_ in tabular for _, type_, _ in plan)
    for name, inferred in unique_text:
        if beside_table:  # text must be the model's only input, and a different text a row names the row
            warn(
                f"column '{name}' has a different text in every row and table columns beside it, so it is taken for an "
                f"id: left out of the inputs (set data.id: {name} to copy it into predictions, or list it alone in "
                "data.inputs to train on the text)"
            )
            reports.append(ColumnReport(name, "ignored", "-", "looks like an id"))
        else:
            plan.append((name, inferred.type, {}))
            reports.append(ColumnReport(name, "input", inferred.type, inferred.reason))
    return plan


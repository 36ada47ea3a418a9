"""`dltrain evaluate` and `dltrain predict`: everything from the run's checkpoint, nothing else."""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dltrain.checkpoint import LoadedRun, load_run
from dltrain.console import collecting, warn
from dltrain.data.batches import TensorSplit
from dltrain.data.encoders import keys
from dltrain.data.media import list_items
from dltrain.data.prepare import missing_files, rebuild, split_targets
from dltrain.data.schema import encode_target
from dltrain.data.sources import EXTENSIONS, ResolvedSource, kind_of, read_chunks, read_table
from dltrain.errors import DataError, UsageError
from dltrain.files import check_output, json_pieces, write_output
from dltrain.train import metrics as metric_registry
from dltrain.train.baseline import Baseline, constant, linear, linear_fits
from dltrain.train.trainer import Seen, infer


def read_input(path: str | Path) -> pd.DataFrame:
    """A table file given on the command line, read whole."""
    return read_table(_input_source(path))


def _input_source(path: str | Path) -> ResolvedSource:
    """A table file given on the command line, as a source (checked to exist and to be a table);
    a url (s3://, gs://, az://, https://) is read from its copy in the cache, named by the url."""
    if is_remote(path):
        from dltrain.data.remote import name_of

        url = str(path)
        kind = kind_of(Path(name_of(url)))
        _a_table(kind, url)
        return ResolvedSource(kind, path=str(_fetched(url).resolve()), origin=url)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    kind = kind_of(path)
    _a_table(kind, path)
    return ResolvedSource(kind, path=str(path.resolve()))


def _a_table(kind: str | None, named: object) -> None:
    if kind == "sql":
        raise UsageError(f"{named}: an SQLite database; say which rows to predict with --query 'SELECT ... FROM table'")
    if kind is None:
        raise DataError(f"{named}: expected a table file ending in {', '.join(sorted(k for k, v in EXTENSIONS.items() if v != 'sql'))}")


def is_remote(path: object) -> bool:
    """A url that dltrain.data.remote reads (given as text: a Path would have lost its //)."""
    from dltrain.data.remote import is_remote as remote

    return isinstance(path, str) and remote(path)


def _fetched(url: str) -> Path:
    """A url on the command line, as its local copy in the cache (the fsspec extra's packages needed)."""
    from dltrain.data.remote import fetched_input

    return fetched_input(url)


@dataclass
class Evaluation:
    split: str
    rows: int
    metrics: dict[str, float]
    confusion: dict | None
    path: Path | None  # the JSON file written (None: the run directory could not be written)
    data_changed: bool = False  # the run's own split, read from data that changed since training (--allow-changed-data)
    baselines: list[Baseline] = field(default_factory=list)  # what the model must beat, on the same rows
    baseline_note: str | None = None  # why a baseline is not shown (the training data is not here)

    def to_dict(self) -> dict:
        data = {"split": self.split, "rows": self.rows, "metrics": self.metrics}
        if self.confusion is not None:
            data["confusion_matrix"] = self.confusion
        if self.data_changed:
            data["data_changed"] = True
        if self.baselines:
            data["baselines"] = {b.name: {"what": b.what, "metrics": b.metrics} for b in self.baselines}
        return data


@dataclass
class Scored:
    """A run's model on a split (or a file): what `evaluate` writes and a report draws, computed once."""

    loaded: LoadedRun
    name: str  # the split, or the file's stem
    rows: TensorSplit  # the encoded rows scored
    seen: Seen  # the model's outputs and the targets
    outcome: metric_registry.Outcome
    metrics: dict[str, float]
    confusion: dict | None
    data: str | Path | None = None  # the labelled file scored (a url as text), when not the run's own split
    data_changed: bool = False  # the own split's data changed since training, and --allow-changed-data took it


def score(
    run: str | Path | LoadedRun, split: str = "test", data: str | Path | None = None, batch_size: int | None = None, allow_changed_data: bool = False
) -> Scored:
    """The metrics of a run on its own split (rebuilt from data.json), or on a whole file with `data`.

    The own split of data that changed since training is refused (DataError) unless `allow_changed_data`."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    data_changed = False
    if data is not None:
        rows, name = _labelled_rows(loaded, data), Path(data).stem
    else:
        (rows, data_changed), name = _own_split(loaded, split, allow_changed_data), split
    if len(rows) == 0:
        raise DataError(f"no rows to evaluate in {data or split}")
    seen = infer(
        loaded.model,
        loaded.loss_fn,
        rows.to(loaded.device).batches(batch_size or loaded.recipe.batch_size),
        loaded.transform,
    )
    outcome = metric_registry.Outcome(loaded.task, seen.outputs, seen.targets, name)
    names = loaded.recipe.metrics or metric_registry.DEFAULTS[loaded.task.target_type]
    names = (*names, *(m for m in metric_registry.EVALUATED[loaded.task.target_type] if m not in names))
    metrics = {"loss": float(seen.loss_sum) / seen.rows, **metric_registry.compute(names, outcome)}
    confusion = None
    if loaded.task.is_classification:
        confusion = {"labels": list(loaded.task.classes), "matrix": outcome.confusion().tolist()}
    return Scored(loaded, name, rows, seen, outcome, metrics, confusion, (data if is_remote(data) else Path(data)) if data is not None else None, data_changed)


def evaluate(
    run: str | Path,
    split: str = "test",
    data: str | Path | None = None,
    batch_size: int | None = None,
    allow_changed_data: bool = False,
    baseline: bool = True,
) -> Evaluation:
    """Metrics of a run on its own split (rebuilt from data.json), or on a whole file with `data`;
    written to evaluate_<split>.json in the run directory (evaluate_<result_name>.json for a file).

    With `baseline`, also what the training majority class (or mean) and a linear model on the same
    encoded inputs, fitted on the run's train split, score on the same rows.

    The own split of data that changed since training is refused unless `allow_changed_data`; the
    result then says "data_changed": true."""
    scored = score(run, split, data, batch_size, allow_changed_data)
    out = scored.loaded.run_dir / f"evaluate_{result_name(split, data)}.json"
    result = Evaluation(scored.name if data is None else str(data), scored.seen.rows, scored.metrics, scored.confusion, out, scored.data_changed)
    if baseline:
        result.baselines, result.baseline_note = baselines(scored)
    try:
        write_output(out, json_pieces(json_safe(result.to_dict())), "", "was not written by dltrain evaluate", _an_evaluation)
    except OSError as error:  # a read-only or full run directory: the figures are still the answer asked for
        warn(f"{out} was not written ({error.strerror or error}): the result is shown, not kept in the run")
        result.path = None
    return result


def _an_evaluation(path: Path) -> bool:
    """Whether a file holds what evaluate writes and nothing else (one written before outputs were listed)."""
    import json

    keys = set(json.loads(path.read_text()))
    return {"split", "rows", "metrics"} <= keys <= {"split", "rows", "metrics", "confusion_matrix", "data_changed", "baselines"}


def baselines(scored: Scored) -> tuple[list[Baseline], str | None]:
    """The training majority (or mean), and a linear model on the same encoded inputs fitted on the
    run's train split, scored on the rows `scored` holds; with why one is missing, if one is."""
    loaded = scored.loaded
    info, task = loaded.recipe.data, loaded.task
    if scored.seen.targets is None or not len(info["indices"].get("train", [])):
        return [], "no baseline: this run has no train split"
    gone = missing_files(info)
    if gone:
        return [], f"no baseline: the data this run was trained on is not here ({', '.join(gone)})"
    names = tuple(n for n in scored.metrics if n != "loss")
    y_eval = scored.seen.targets
    found: list[str] = []
    tabular = isinstance(scored.rows, TensorSplit) and loaded.schema.files is None and linear_fits(scored.rows.x)
    streamed = (loaded.recipe.config.get("data") or {}).get("in_memory") is False
    tabular = tabular and not streamed  # a streamed table's train split may not fit in memory
    try:
        with collecting():  # a metric undefined on this split was said for the model already
            if tabular:
                train = rebuild(info, loaded.schema, task.form, ("train",), changed=found.append)["train"]
                y_train = train.y
            else:
                y_train = split_targets(info, loaded.schema, task.form, "train")
            shown = [constant(task, y_train, y_eval, names, scored.name)]
            if tabular and not found:
                x_eval = scored.rows.x if loaded.transform is None else loaded.transform(scored.rows.x)
                x_train = train.x if loaded.transform is None else loaded.transform(train.x)
                threshold = (loaded.recipe.config.get("train") or {}).get("threshold")  # the model's rule: auto, a number, or 0.5
                seed = int(loaded.recipe.config.get("seed") or 0)
                shown.append(linear(task, x_train, y_train, x_eval, y_eval, names, scored.name, seed, threshold="auto" if threshold == "auto" else None))
    except DataError as error:  # the train split's rows are gone from changed data
        return [], f"no baseline: {error}"
    note = f"no linear baseline: the data this run was trained on changed since ({found[0]})" if found else None
    if streamed:
        note = "no linear baseline: this run streams its data (data.in_memory: false), and a linear model is fitted on the whole train split in memory"
    return shown, note


SPLITS = ("train", "val", "test")


def result_name(split: str, data: str | Path | None = None) -> str:
    """What names the files of a result in the run (evaluate_<name>.json, report_<name>.html): the
    split, or the --data file's stem; a file named like a split (other/test.csv) is `data-test`, so
    that it never replaces the run's own result on that split."""
    if data is None:
        return split
    stem = Path(data).stem
    return f"data-{stem}" if stem in SPLITS else stem


def _labelled_rows(loaded: LoadedRun, data: str | Path) -> TensorSplit:
    """Every row of a table file (or, for a model of files, a folder of class subfolders, as fit
    reads one) that has a target the model knows, encoded as training did."""
    files = loaded.schema.files
    folder = Path(data)
    if files is not None and is_remote(data) and kind_of(folder) is None:  # a prefix of class folders
        folder = _fetched(str(data))
    if files is not None and folder.is_dir():
        from dltrain.data.encoders import ENCODERS

        table = ENCODERS.get(files.type).folder_table(folder)
        table = table.rename(columns={"path": files.column, "label": loaded.schema.target.column})
    else:
        table = read_input(data)
    target = loaded.schema.target.column
    if target not in table.columns:
        raise DataError(f"{data}: the target column '{target}' is not in it; its columns: {', '.join(table.columns)}")
    table = table[keys(table[target]).notna().to_numpy()]
    y, known = encode_target(loaded.schema.target, table[target], loaded.task.form)
    if not known.all():
        warn(f"{int((~known).sum())} row(s) of {data} have target values the model never saw: left out")
        table, y = table[known], y[torch.from_numpy(known)]
    x, readable = loaded.schema.encode_inputs(table, str(data), new=True)
    return TensorSplit(x, y[torch.from_numpy(readable)], np.asarray(table.index)[readable])  # rows of the file as read


def _own_split(loaded: LoadedRun, split: str, allow_changed_data: bool = False) -> tuple[TensorSplit, bool]:
    """The run's own split, read again from the data it was trained on (the rows data.json records),
    and whether that data changed since (only with `allow_changed_data`: else that is a DataError)."""
    info = loaded.recipe.data
    if split not in info["indices"] or len(info["indices"][split]) == 0:
        present = ", ".join(s for s, rows in info["indices"].items() if len(rows))
        raise UsageError(f"this run has no {split} split (it has: {present}); use --split or --data FILE")
    found: list[str] = []

    def changed(what: str) -> None:
        # the split is a list of row positions: in changed data they hold other rows, and metrics on
        # them would be wrong with nothing but a warning to say so
        if not allow_changed_data:
            raise DataError(
                f"cannot evaluate the {split} split of {loaded.run_dir}: its data changed since it was trained "
                f"({what}). The run records the positions of each split's rows, which now hold other rows. "
                "Put the data the run was trained on back; or evaluate a table that has the target column with "
                "--data FILE; or give --allow-changed-data to evaluate those positions of the data as it is now "
                '(the result then says "data_changed": true)'
            )
        warn(
            f"the data of this run changed since it was trained ({what}): evaluating the recorded rows of the "
            f'{split} split of the data as it is now (--allow-changed-data); the result says "data_changed": true'
        )
        found.append(what)

    gone = missing_files(info)
    if gone:
        raise DataError(
            f"the {split} split of this run is read from the data it was trained on, and {', '.join(gone)} is gone "
            "(not found): evaluate a table that has the target column with --data FILE"
        )
    rows = rebuild(info, loaded.schema, loaded.task.form, (split,), changed=changed)[split]
    return rows, bool(found)


CHUNK_ROWS = 50_000  # rows read, encoded and predicted at a time: memory holds one chunk, never the whole table


def _query_source(input: str | Path, query: str) -> ResolvedSource:
    """The rows of `query` on an SQLite file or a database url (a password as ${VAR}, or from the
    driver's variable such as PGPASSWORD), read in the order the query gives them."""
    text = str(input)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return ResolvedSource("sql", url=text, query=query, order="query")
    path = Path(input)
    if not path.is_file():
        raise DataError(f"{path}: file not found (--query reads an SQLite file, or a database url such as postgresql://user@host/db)")
    return ResolvedSource("sql", url=f"sqlite:///{path.resolve()}", query=query, order="query")


def _input_chunks(
    loaded: LoadedRun, input: str | Path | pd.DataFrame, rows: int, query: str | None = None
) -> tuple[Iterator[pd.DataFrame], str, Callable[[str], str] | None]:
    """The rows to predict, `rows` at a time, how messages name them, and for files fetched from a
    url how the predictions name each (its url, not its copy in the cache): a table file read chunk
    by chunk (a JSON array is read whole), the rows of an SQL query as the database sends them, a
    DataFrame in slices, or image paths made into the table the model expects."""
    if query is not None:
        if isinstance(input, pd.DataFrame):
            raise UsageError("a query reads a database: give its url or SQLite file as the input, not a DataFrame")
        source = _query_source(input, query)
        return read_chunks(source, rows), source.label, None
    if isinstance(input, pd.DataFrame) or (loaded.schema.files is not None and kind_of(Path(input)) is None):
        rename = None
        if is_remote(input):  # image, sound or clip files under a url: their mirror in the cache
            from dltrain.data.remote import remote_name

            local = _fetched(str(input))
            table, _ = _input_table(loaded, local)
            rename, label = functools.partial(remote_name, root=local, url=str(input)), str(input)
        else:
            table, label = _input_table(loaded, input)
        return (table.iloc[start : start + rows] for start in range(0, max(len(table), 1), rows)), label, rename
    return read_chunks(_input_source(input), rows), str(input), None


def _input_table(loaded: LoadedRun, input: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows to predict: a table as given, or image paths made into the table the model expects."""
    if isinstance(input, pd.DataFrame):
        return input, "the input"
    files = loaded.schema.files
    if files is not None and kind_of(Path(input)) is None:
        found = list_items(input, files.is_item)
        if not found:
            raise DataError(f"{input}: no {files.type} files found there (a file, a folder or a glob pattern)")
        return pd.DataFrame({files.column: [str(f) for f in found]}), str(input)
    return read_input(input), str(input)


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


class _Tally:
    """The warnings of every chunk, said once at the end with their counts added up: "column 'x' has
    7 value(s) that training never saw" once for the table, not once a chunk. Messages that differ
    only in their count and their examples (in parentheses) are the same warning; the first
    chunk's examples are shown."""

    # the count of a counted warning: a number before "value(s)", "cell(s) of text", "infinite value(s)", "image(s)"
    _COUNT = re.compile(r"\b\d+(?= (?:[A-Za-z]+ )?[A-Za-z]+\(s\))")
    _EXAMPLES = re.compile(r"\([^()]*\)")

    def __init__(self) -> None:
        self.found: dict[str, tuple[str, int]] = {}  # the warning without count and examples -> its first message, the total

    def add(self, messages: Iterable[str]) -> None:
        for message in messages:
            count = self._COUNT.search(message)
            key = message if count is None else self._EXAMPLES.sub("", message[: count.start()] + message[count.end() :])
            first, total = self.found.get(key, (message, 0))
            self.found[key] = (first, total + (int(count[0]) if count else 0))

    def say(self) -> None:
        for message, total in self.found.values():
            count = self._COUNT.search(message)
            warn(message if count is None else message[: count.start()] + str(total) + message[count.end() :])
        self.found.clear()


@dataclass
class Ensemble:
    """The fold models of a `dltrain cv` folder predicting together: each fold encodes the rows with
    its own encoders (fitted on its own training rows) and runs its own model; their class
    probabilities (or values) are averaged."""

    folder: Path
    members: list[LoadedRun]

    @property
    def first(self) -> LoadedRun:
        return self.members[0]


def load_predictor(run: str | Path) -> LoadedRun | Ensemble:
    """A run (its best.pt), a checkpoint, or a `dltrain cv` folder (every fold's model together)."""
    path = Path(run)
    if path.is_dir() and (path / "cv.json").is_file() and not (path / "best.pt").exists():
        return load_ensemble(path)
    return load_run(run)


def load_ensemble(folder: Path) -> Ensemble:
    import json

    try:
        folds = int(json.loads((folder / "cv.json").read_text())["folds"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{folder / 'cv.json'}: not a cross-validation summary written by dltrain cv ({error})") from None
    runs = [folder / f"fold-{k}" for k in range(1, folds + 1)]
    missing = [str(r) for r in runs if not (r / "best.pt").is_file()]
    if missing:
        raise DataError(f"{folder}: the cross-validation has {folds} folds, and {', '.join(missing)} has no best.pt; predict with one fold's run instead")
    members = [load_run(r) for r in runs]
    first = members[0]
    for member in members[1:]:
        if member.task.target_type != first.task.target_type or member.schema.target.column != first.schema.target.column:
            raise DataError(f"{member.run_dir}: its target is not the other folds' ({member.schema.target.column}, {member.task.target_type}): not one cross-validation")
    return Ensemble(folder, members)


def _ensemble_outputs(
    ensemble: Ensemble, chunk: pd.DataFrame, label: str, batch_size: int | None, tally: _Tally, on_error: str | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """predict's columns for one chunk, from every fold's model: the mean of their probabilities
    (the class with the largest; a binary target's positive class above the folds' mean threshold),
    or of their values."""
    encoded = []
    for n, member in enumerate(ensemble.members):
        said: list[str] = []
        try:
            with collecting() as said:
                encoded.append(member.schema.encode_inputs(chunk, label, new=True, on_error=on_error))
        finally:
            if n == 0:  # the same cells, the same warnings: said once
                tally.add(said)
    common = np.logical_and.reduce([readable for _, readable in encoded])
    first = ensemble.first
    task = first.task
    columns = echoed_columns(first, chunk[common])
    if task.is_classification:
        classes = list(dict.fromkeys(c for m in ensemble.members for c in m.task.classes))
        total = np.zeros((int(common.sum()), len(classes)))
        for member, (x, readable) in zip(ensemble.members, encoded):
            keep = torch.from_numpy(common[readable])
            probs = member.task.probabilities(run_model(member, x[keep], batch_size)).cpu().numpy()
            for i, name in enumerate(member.task.classes):
                total[:, classes.index(name)] += probs[:, i]
        probs = total / len(ensemble.members)
        if task.target_type == "binary":
            threshold = float(np.mean([m.task.threshold for m in ensemble.members]))
            chosen = (probs[:, classes.index(task.classes[1])] > threshold).astype(int)
            predicted = np.array([task.classes[0], task.classes[1]], dtype=object)[chosen]
        else:
            predicted = np.array(classes, dtype=object)[probs.argmax(1)]
        columns["prediction"] = predicted
        for i, name in enumerate(classes):
            columns[f"prob_{name}"] = probs[:, i]
    else:
        values = [m.task.values(run_model(m, x[torch.from_numpy(common[r])], batch_size)).cpu().numpy() for m, (x, r) in zip(ensemble.members, encoded)]
        columns["prediction"] = np.mean(values, axis=0)
    return pd.DataFrame(columns, index=range(int(common.sum()))), common


ROW = "row"  # predict's column naming each input row by its position (from 0, as overrides count), when no id names it


def _predictions(
    loaded: LoadedRun | Ensemble,
    input: str | Path | pd.DataFrame,
    batch_size: int | None,
    rows: int,
    tally: _Tally,
    query: str | None = None,
    on_error: str | None = None,
) -> Iterator[pd.DataFrame]:
    """The predictions of the input's rows, chunk by chunk, in the input's order; the chunks'
    warnings go to `tally`. Rows of a table with no id column (data.id) are named by `row`, their
    position in the input (from 0), so a prediction can be joined back to its row."""
    first = loaded.first if isinstance(loaded, Ensemble) else loaded
    chunks, label, rename = _input_chunks(first, input, rows, query)
    offset = 0
    for chunk in chunks:
        if isinstance(loaded, Ensemble):
            frame, readable = _ensemble_outputs(loaded, chunk, label, batch_size, tally, on_error)
        else:
            said: list[str] = []
            try:
                with collecting() as said:
                    x, readable = loaded.schema.encode_inputs(chunk, label, new=True, on_error=on_error)
            finally:
                tally.add(said)
            frame = decode_outputs(loaded, chunk[readable], run_model(loaded, x, batch_size))
        if rename is not None and first.schema.files is not None and first.schema.files.column in frame.columns:
            frame[first.schema.files.column] = frame[first.schema.files.column].map(rename)
        if not echoed_columns(first, chunk.head(0)):  # no id or file column names the rows
            frame.insert(0, ROW if ROW not in frame.columns else f"_{ROW}", offset + np.flatnonzero(readable))
        offset += len(chunk)
        yield frame


@dataclass
class Written:
    """What `predict` with an output returns: the file and its row count, never the rows themselves."""

    path: Path
    rows: int

    def __len__(self) -> int:
        return self.rows


def predict(
    run: str | Path,
    input: str | Path | pd.DataFrame,
    output: str | Path | None = None,
    batch_size: int | None = None,
    chunk_rows: int | None = None,
    query: str | None = None,
    on_error: str | None = None,
) -> pd.DataFrame | Written:
    """Predictions for a table (without its target), or for image files, a folder of them or a glob.
    `run` is a run directory, a checkpoint, or a `dltrain cv` folder: its fold models together.

    The rows are read, encoded and predicted `chunk_rows` (CHUNK_ROWS) at a time. Without `output`
    the predictions are returned as one DataFrame: the id column (or the file path), `prediction`,
    and `prob_<class>` per class. With `output` they are written there chunk by chunk as they come
    (CSV, or TSV, Parquet, JSON lines by the suffix), so memory holds one chunk however long the
    table is, and the file appears whole or not at all; what is returned is then a `Written`.

    With `query`, the input is an SQLite file or a database url, and the rows are the query's, in
    its order, fetched `chunk_rows` at a time. `on_error`: `skip` leaves unreadable files out with a
    warning (`raise`: an error naming them); default: the run's data.on_error.
    """
    _check_on_error(on_error)
    if output is not None:
        output = _output_path(output, input)
    loaded = load_predictor(run)
    tally = _Tally()
    try:
        frames = _predictions(loaded, input, batch_size, chunk_rows or CHUNK_ROWS, tally, query, on_error)
        if output is None:
            found = list(frames)
            return found[0] if len(found) == 1 else pd.concat(found, ignore_index=True)
        return Written(output, _write_predictions(output, frames))
    finally:
        tally.say()


def predict_chunks(
    run: str | Path,
    input: str | Path | pd.DataFrame,
    batch_size: int | None = None,
    chunk_rows: int | None = None,
    query: str | None = None,
    on_error: str | None = None,
) -> Iterator[pd.DataFrame]:
    """The predictions of `predict`, one DataFrame per chunk of `chunk_rows` input rows, as they are
    made: memory holds one chunk, whatever the length of the input (predict to standard output)."""
    loaded = load_predictor(run)
    tally = _Tally()
    try:
        yield from _predictions(loaded, input, batch_size, chunk_rows or CHUNK_ROWS, tally, query, on_error)
    finally:
        tally.say()


def _check_on_error(on_error: str | None) -> None:
    if on_error not in (None, "skip", "raise"):
        raise UsageError(f"--on-error must be skip or raise, found {on_error!r}")


def _write_predictions(output: Path, frames: Iterator[pd.DataFrame]) -> int:
    """Write the predictions to `output` as they come, through write_output (a temporary file beside
    it, renamed when complete); returns the rows written."""
    first = next(frames)  # the first chunk is read and predicted before the file is begun: a bad input writes nothing
    rows = 0

    def counted() -> Iterator[pd.DataFrame]:
        nonlocal rows
        for frame in itertools.chain([first], frames):
            rows += len(frame)
            yield frame

    def parquet(path: Path) -> None:
        _write_parquet(path, counted(), output)

    suffix = output.suffix.lower()
    if suffix == ".parquet":
        data = parquet
    elif suffix in (".json", ".jsonl"):
        data = (frame.to_json(orient="records", lines=True).encode() for frame in counted() if len(frame))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        data = (frame.to_csv(index=False, header=n == 0, sep=sep).encode() for n, frame in enumerate(counted()))
    write_output(output, data, "--output", _NOT_AN_OUTPUT)
    return rows


def _write_parquet(path: Path, frames: Iterator[pd.DataFrame], output: Path) -> None:
    """One Parquet file, a row group per chunk, every chunk in the first chunk's column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, schema, done = None, None, 0
    try:
        for frame in frames:
            try:
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as error:
                raise DataError(
                    f"--output {output}: predictions {done + 1}-{done + len(frame)} cannot be written in the column types of "
                    f"the ones before ({error}); a Parquet column holds one type. Write CSV (an --output ending in .csv), "
                    "or give the column one type"
                ) from None
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            done += len(frame)
    finally:
        if writer is not None:
            writer.close()


def run_model(loaded: LoadedRun, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The model's outputs for encoded rows (predict and serve)."""
    size = batch_size or max(loaded.recipe.batch_size, 256)
    x = x.to(loaded.device)
    transform = loaded.transform
    if 0 < len(x) <= size:  # one batch (a server's request): the model alone, as infer runs it
        with torch.inference_mode():
            return loaded.model(x if transform is None else transform(x)).float()
    batches = ((x[start : start + size], None) for start in range(0, len(x), size))
    return infer(loaded.model, None, batches, transform).outputs


def decode_outputs(loaded: LoadedRun, table: pd.DataFrame, outputs: torch.Tensor) -> pd.DataFrame:
    """The id (or file) column, `prediction` and each class's `prob_<class>` for the rows of `table`
    (those encoded, in order) and their outputs: what predict writes."""
    return pd.DataFrame(decoded_columns(loaded, table, outputs), index=range(len(table)))


def decoded_columns(loaded: LoadedRun, table: pd.DataFrame | None, outputs: torch.Tensor) -> dict[str, np.ndarray]:
    """decode_outputs' columns, as arrays by name: the rows' echoed columns, then the outputs'."""
    return {**echoed_columns(loaded, table), **output_columns(loaded, outputs)}


def echoed_columns(loaded: LoadedRun, table: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The columns of the rows that an answer repeats to name them: the id column, the files' paths."""
    result: dict[str, np.ndarray] = {}
    media = loaded.schema.media
    for column in (loaded.schema.id, media.column if media is not None else None):
        if table is not None and column is not None and column in table.columns and column not in result:
            result[column] = table[column].to_numpy()
    return result


def output_columns(loaded: LoadedRun, outputs: torch.Tensor) -> dict[str, np.ndarray]:
    """`prediction` and, for classes, each class's `prob_<class>`, from the model's outputs (a
    server decodes a batch of requests at once and gives each request its rows)."""
    result: dict[str, np.ndarray] = {}
    task = loaded.task
    if task.is_classification:
        probs = task.probabilities(outputs).cpu().numpy()
        # the largest output, or for a binary target the positive class above the run's threshold
        result["prediction"] = np.array(task.classes, dtype=object)[task.predicted(outputs).cpu().numpy()]
        for i, name in enumerate(task.classes):
            result[f"prob_{name}"] = probs[:, i]
    else:
        result["prediction"] = task.values(outputs).cpu().numpy()
    return result


_OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
_NOT_AN_OUTPUT = "is not an earlier output of this prediction (dltrain did not write it, or it was changed since)"


def _output_path(output: str | Path, input: object) -> Path:
    """Where predictions go: never over the input itself, nor over any file that dltrain did not
    write (files.write_output: a device such as /dev/null is written into); the format from the
    suffix (CSV unless .tsv, .parquet, .json/.jsonl)."""
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"--output {path}: a folder; give a file name such as {path / 'predictions.csv'}")
    if isinstance(input, (str, Path)) and path.exists():
        try:
            same = path.resolve() == Path(input).resolve() or path.samefile(input)
        except OSError:
            same = False
        if same:
            raise UsageError(f"--output {path}: that is the input file; dltrain never writes over data. Give another file")
    if path.suffix and path.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise UsageError(f"--output {path}: unknown suffix {path.suffix!r}; predictions are written as {', '.join(_OUTPUT_SUFFIXES)}")
    check_output(path, "--output", _NOT_AN_OUTPUT)  # before the model runs: refused at once
    return path

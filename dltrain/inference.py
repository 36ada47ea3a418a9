"""`dltrain evaluate` and `dltrain predict`: everything from the run's checkpoint, nothing else."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dltrain.checkpoint import LoadedRun, load_run
from dltrain.console import warn
from dltrain.data.batches import TensorSplit
from dltrain.data.encoders import keys
from dltrain.data.media import list_items
from dltrain.data.prepare import missing_files, rebuild
from dltrain.data.schema import encode_target
from dltrain.data.sources import EXTENSIONS, ResolvedSource, kind_of, read_table
from dltrain.errors import DataError, UsageError
from dltrain.files import check_output, json_pieces, write_output
from dltrain.train import metrics as metric_registry
from dltrain.train.trainer import Seen, infer


def read_input(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    kind = kind_of(path)
    if kind is None or kind == "sql":
        raise DataError(f"{path}: expected a table file ending in {', '.join(sorted(k for k, v in EXTENSIONS.items() if v != 'sql'))}")
    return read_table(ResolvedSource(kind, path=str(path.resolve())))


@dataclass
class Evaluation:
    split: str
    rows: int
    metrics: dict[str, float]
    confusion: dict | None
    path: Path  # the JSON file written

    def to_dict(self) -> dict:
        data = {"split": self.split, "rows": self.rows, "metrics": self.metrics}
        if self.confusion is not None:
            data["confusion_matrix"] = self.confusion
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
    data: Path | None = None  # the labelled file scored, when not the run's own split


def score(run: str | Path | LoadedRun, split: str = "test", data: str | Path | None = None, batch_size: int | None = None) -> Scored:
    """The metrics of a run on its own split (rebuilt from data.json), or on a whole file with `data`."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    if data is not None:
        rows, name = _labelled_rows(loaded, data), Path(data).stem
    else:
        rows, name = _own_split(loaded, split), split
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
    metrics = {"loss": float(seen.loss_sum) / seen.rows, **metric_registry.compute(names, outcome)}
    confusion = None
    if loaded.task.is_classification:
        confusion = {"labels": list(loaded.task.classes), "matrix": outcome.confusion().tolist()}
    return Scored(loaded, name, rows, seen, outcome, metrics, confusion, Path(data) if data is not None else None)


def evaluate(
    run: str | Path, split: str = "test", data: str | Path | None = None, batch_size: int | None = None
) -> Evaluation:
    """Metrics of a run on its own split (rebuilt from data.json), or on a whole file with `data`;
    written to evaluate_<split>.json in the run directory (evaluate_<result_name>.json for a file)."""
    scored = score(run, split, data, batch_size)
    out = scored.loaded.run_dir / f"evaluate_{result_name(split, data)}.json"
    result = Evaluation(scored.name if data is None else str(data), scored.seen.rows, scored.metrics, scored.confusion, out)
    write_output(out, json_pieces(_json_safe(result.to_dict())), "", "was not written by dltrain evaluate", _an_evaluation)
    return result


def _an_evaluation(path: Path) -> bool:
    """Whether a file holds what evaluate writes and nothing else (one written before outputs were listed)."""
    import json

    keys = set(json.loads(path.read_text()))
    return {"split", "rows", "metrics"} <= keys <= {"split", "rows", "metrics", "confusion_matrix"}


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
    """Every row of a table file that has a target the model knows, encoded as training did."""
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


def _own_split(loaded: LoadedRun, split: str) -> TensorSplit:
    """The run's own split, read again from the data it was trained on (the rows data.json records)."""
    info = loaded.recipe.data
    if split not in info["indices"] or len(info["indices"][split]) == 0:
        present = ", ".join(s for s, rows in info["indices"].items() if len(rows))
        raise UsageError(f"this run has no {split} split (it has: {present}); use --split or --data FILE")

    def changed(label: str) -> None:
        warn(
            f"the data of this run changed since it was trained ({label}): the recorded rows of each "
            "split are used, but they may not hold what they held then"
        )

    gone = missing_files(info)
    if gone:
        raise DataError(
            f"the {split} split of this run is read from the data it was trained on, and {', '.join(gone)} is gone "
            "(not found): evaluate a table that has the target column with --data FILE"
        )
    return rebuild(info, loaded.schema, loaded.task.form, (split,), changed=changed)[split]


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


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def predict(
    run: str | Path, input: str | Path | pd.DataFrame, output: str | Path | None = None, batch_size: int | None = None
) -> pd.DataFrame:
    """Predictions for a table (without its target), or for image files, a folder of them or a glob.

    The CSV has the id column (or the file path), `prediction`, and `prob_<class>` per class.
    """
    if output is not None:
        output = _output_path(output, input)
    loaded = load_run(run)
    table, label = _input_table(loaded, input)
    x, readable = loaded.schema.encode_inputs(table, label, new=True)
    outputs = run_model(loaded, x, batch_size)
    result = decode_outputs(loaded, table[readable], outputs)
    if output is not None:
        if output.suffix.lower() == ".parquet":
            buffer = io.BytesIO()
            result.to_parquet(buffer, index=False)
            data = buffer.getvalue()
        elif output.suffix.lower() in (".json", ".jsonl"):
            data = result.to_json(orient="records", lines=True).encode()
        else:
            data = result.to_csv(index=False, sep="\t" if output.suffix.lower() == ".tsv" else ",").encode()
        write_output(output, data, "--output", _NOT_AN_OUTPUT)
    return result


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
        result["prediction"] = np.array(task.classes, dtype=object)[probs.argmax(1)]
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

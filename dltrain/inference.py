"""`dltrain evaluate` and `dltrain predict`: everything from the run's checkpoint, nothing else."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from dltrain.build import build_loss, located
from dltrain.components import ComponentError
from dltrain.config import LoadedConfig, load_config
from dltrain.console import warn
from dltrain.data.dataset import DataSchema, encode_target, make_task, rebuild
from dltrain.data.encoders import keys
from dltrain.data.media import list_items
from dltrain.data.sources import EXTENSIONS, ResolvedSource, kind_of, read_table
from dltrain.errors import CheckpointError, DataError, UsageError
from dltrain.files import write_atomic, write_json, write_text
from dltrain.fitting import resolve_device
from dltrain.model.builder import InputSpec, build_model
from dltrain.run import checkpoint_path, load_checkpoint
from dltrain.train import metrics as metric_registry
from dltrain.train.losses import LossEntry
from dltrain.train.task import Task
from dltrain.train.trainer import evaluate_batches


@dataclass
class LoadedRun:
    path: Path  # the checkpoint file
    state: dict
    cfg: LoadedConfig
    schema: DataSchema
    task: Task
    loss_entry: LossEntry
    loss_fn: nn.Module
    model: nn.Module
    device: torch.device

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def load_run(run_or_checkpoint: str | Path, device: str = "auto") -> LoadedRun:
    """Rebuild a trained model and its encoders from a checkpoint alone."""
    path = checkpoint_path(run_or_checkpoint)
    state = load_checkpoint(path)
    try:
        cfg = load_config(state["config"], origin=f"{path} (its config)")
        with located(cfg):
            loss_entry, loss_fn = build_loss(cfg.loss)
        schema = DataSchema.from_dict(state["encoders"])
        task = make_task(loss_entry, schema.target)
        model, _ = build_model(cfg.layers, InputSpec.from_dict(state["input_spec"]), task.output_size)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError, ComponentError) as error:
        raise CheckpointError(f"{path}: the checkpoint does not rebuild its model: {str(error).splitlines()[0]}") from None
    chosen = resolve_device(device)
    model.to(chosen).eval()
    return LoadedRun(path, state, cfg, schema, task, loss_entry, loss_fn.to(chosen), model, chosen)


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


def evaluate(
    run: str | Path, split: str = "test", data: str | Path | None = None, batch_size: int | None = None
) -> Evaluation:
    """Metrics of a run on its own split (rebuilt from data.json), or on a whole file with `data`."""
    loaded = load_run(run)
    target = loaded.schema.target.column
    if data is not None:
        table = read_input(data)
        if target not in table.columns:
            raise DataError(f"{data}: the target column '{target}' is not in it; its columns: {', '.join(table.columns)}")
        table = table[keys(table[target]).notna().to_numpy()]
        y, known = encode_target(loaded.schema.target, table[target], loaded.loss_entry)
        if not known.all():
            warn(f"{int((~known).sum())} row(s) of {data} have target values the model never saw: left out")
            table, y = table[known], y[torch.from_numpy(known)]
        x, readable = loaded.schema.encode_inputs(table, str(data), new=True)
        y = y[torch.from_numpy(readable)]
        name = Path(data).stem
    else:
        info = loaded.state["data"]
        if split not in info["indices"] or len(info["indices"][split]) == 0:
            present = ", ".join(s for s, rows in info["indices"].items() if len(rows))
            raise UsageError(f"this run has no {split} split (it has: {present}); use --split or --data FILE")
        part = rebuild(info, loaded.schema, loaded.loss_entry, (split,))[split]
        x, y, name = part.x, part.y, split
    if x.shape[0] == 0:
        raise DataError(f"no rows to evaluate in {data or split}")
    x, y = x.to(loaded.device), y.to(loaded.device)
    loss, outputs = evaluate_batches(
        loaded.model,
        loaded.loss_fn,
        x,
        y,
        batch_size or loaded.cfg.config.data.batch_size,
        transform=loaded.schema.batch_transform(train=False),
    )
    outcome = metric_registry.Outcome(loaded.task, outputs, y, name)
    names = tuple(loaded.state.get("metrics") or metric_registry.DEFAULTS[loaded.task.target_type])
    metrics = {"loss": loss, **metric_registry.compute(names, outcome)}
    confusion = None
    if loaded.task.is_classification:
        confusion = {"labels": list(loaded.task.classes), "matrix": outcome.confusion().tolist()}
    out = loaded.run_dir / f"evaluate_{name}.json"
    result = Evaluation(name if data is None else str(data), int(x.shape[0]), metrics, confusion, out)
    write_json(out, _json_safe(result.to_dict()))
    return result


def _input_table(loaded: LoadedRun, input: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows to predict: a table as given, or image paths made into the table the model expects."""
    if isinstance(input, pd.DataFrame):
        return input, "the input"
    media = loaded.schema.media
    path = Path(input)
    if media is not None and hasattr(media, "is_item") and kind_of(path) is None:
        files = list_items(input, media.is_item)
        if not files:
            raise DataError(f"{input}: no {media.type} files found there (a file, a folder or a glob pattern)")
        return pd.DataFrame({media.column: [str(f) for f in files]}), str(input)
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
    table = table[readable]
    _, outputs = evaluate_batches(
        loaded.model,
        loaded.loss_fn,
        x.to(loaded.device),
        None,
        batch_size or max(loaded.cfg.config.data.batch_size, 256),
        transform=loaded.schema.batch_transform(train=False),
    )
    result = pd.DataFrame(index=range(len(table)))
    media = loaded.schema.media
    for column in (loaded.schema.id, media.column if media is not None else None):
        if column is not None and column in table.columns and column not in result.columns:
            result[column] = table[column].to_numpy()
    task = loaded.task
    if task.is_classification:
        probs = task.probabilities(outputs).cpu()
        classes = list(task.classes)
        result["prediction"] = [classes[i] for i in probs.argmax(1).tolist()]
        for i, name in enumerate(classes):
            result[f"prob_{name}"] = probs[:, i].numpy()
    else:
        result["prediction"] = task.values(outputs).cpu().numpy()
    if output is not None:
        if output.is_file() and _columns_of(output) != list(result.columns):
            raise UsageError(
                f"--output {output}: the file exists and is not an earlier output of this prediction (its columns "
                f"differ from {', '.join(result.columns)}); dltrain never writes over data. Give another name, or remove it first"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".parquet":
            buffer = io.BytesIO()
            result.to_parquet(buffer, index=False)
            write_atomic(output, buffer.getvalue())
        elif output.suffix.lower() in (".json", ".jsonl"):
            write_text(output, result.to_json(orient="records", lines=True))
        else:
            write_text(output, result.to_csv(index=False, sep="\t" if output.suffix.lower() == ".tsv" else ","))
    return result


_OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")


def _columns_of(path: Path) -> list[str] | None:
    """The columns of a table file; None when it cannot be read as one."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if path.suffix.lower() in (".json", ".jsonl"):
            return list(pd.read_json(path, lines=True, nrows=1).columns)
        return list(pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",").columns)
    except Exception:  # unreadable as that format: not an earlier output
        return None


def _output_path(output: str | Path, input: object) -> Path:
    """Where predictions go: never over the input itself; the format from the suffix (CSV unless .tsv, .parquet, .json/.jsonl)."""
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
    return path

"""`dltrain init`: a starter config for a table or a folder of class subfolders, commented key by key.

The column types are inferred as `fit` would infer them and written out, the model is sized to the
data, and the loss, metrics and monitor fit the target; `dltrain fit` trains it as written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dltrain.errors import DataError, UsageError

_TASKS = {
    "category": ("CrossEntropyLoss", "one output per class"),
    "binary": ("BCEWithLogitsLoss", "one output: the logit of the positive class"),
    "numeric": ("MSELoss", "one output, in standardized units"),
}


def starter_config(data: str | Path, target: str | None, output: str | Path | None = None) -> str:
    """The YAML text of a starter config; paths in it are relative to where it will be written."""
    from dltrain.data.encoders import ENCODERS, infer_type, looks_like_id
    from dltrain.data.sources import FOLDER_TYPES, ResolvedSource, read_table, resolve_source

    data = Path(data)
    if not data.exists():
        raise UsageError(f"{data}: no such file or folder")
    where = Path(output).resolve().parent if output else Path.cwd()
    source = resolve_source(str(data.resolve()), lambda value, key: Path(value))
    relative = os.path.relpath(data.resolve(), where)
    table = read_table(ResolvedSource(source.type, path=source.path))
    folder = source.type in FOLDER_TYPES
    target = target or ("label" if folder else None)
    if target is None:
        raise UsageError(f"give the column to predict: dltrain init {data} --target COLUMN (its columns: {', '.join(table.columns)})")
    if target not in table.columns:
        from dltrain.components import suggest

        raise DataError(f"column '{target}' is not in {data}.{suggest(target, list(table.columns))} Its columns: {', '.join(table.columns)}")
    target_type = infer_type(table[target].dropna(), is_target=True).type
    if target_type not in _TASKS:
        raise DataError(f"column '{target}' looks like {target_type}, which dltrain cannot predict: give a column of classes or numbers")
    loss, output_note = _TASKS[target_type]
    name = Path(data).stem.replace(" ", "_") or "model"
    lines = [
        f"# A starter config made by `dltrain init {data} --target {target}`: edit it, then `dltrain fit` it.",
        f"name: {name}                # the run's folder: runs/{name}",
        "seed: 0                      # one seed for splits, initial weights and shuffling",
        "",
        "data:",
        f"  source: {relative}        # relative to this file",
    ]
    rows = len(table)
    if folder:
        kind = source.type.rstrip("s") if source.type != "images" else "image"
        media = ENCODERS.get(kind)
        encoder = media.fit("path", table["path"].head(2000), {}, "skip")
        shape = encoder.shape
        options = _media_options(encoder)
        lines += [
            "  inputs:                    # the files, decoded once and cached",
            f"    - {{column: path, type: {kind}{options}}}",
            f"  target: {target}               # the class folder of each file",
        ]
        layers = _cnn(len(shape))
        features = None
    else:
        lines.append("  inputs:                    # the columns the model reads, with their types (as inferred)")
        features = 0
        for column in table.columns:
            if column == target:
                continue
            series = table[column]
            inferred = infer_type(series.dropna(), is_target=False) if series.notna().any() else None
            if inferred is None:
                lines.append(f"    # - {column}            left out: the column is empty")
                continue
            if inferred.type in ("numeric", "binary", "category") and looks_like_id(series):
                lines.append(f"    # - {column}            left out: a different value in every row, so an id")
                continue
            if inferred.type not in ("numeric", "binary", "category"):
                lines.append(f"    # - {{column: {column}, type: {inferred.type}}}   left out: one {inferred.type} column must be the only input")
                continue
            lines.append(f"    - {{column: {column}, type: {inferred.type}}}   # {inferred.reason}")
            features += series.nunique() + 1 if inferred.type == "category" else 1
        if features == 0:
            raise DataError(f"{data}: no column but '{target}' can be an input (numbers, two values, or categories)")
        lines.append(f"  target: {{column: {target}, type: {target_type}}}")
        hidden = max(16, min(256, 2 ** round(math.log2(max(features * 2, 16)))))
        layers = [f"Linear: {hidden}", "ReLU", "Dropout: 0.1", f"Linear: {max(8, hidden // 2)}", "ReLU"]
    # small data: more epochs and a larger step; early stopping ends them when validation stalls
    batch, epochs, rate = (16, 100, 0.002) if rows < 1_000 else (32, 50, 0.002) if rows < 20_000 else (256, 10, 0.001)
    lines += [
        "  split: {train: 0.8, val: 0.1, test: 0.1}   # stratified by class, seeded",
        f"  batch_size: {batch}            # rows per step",
        "",
        "model:",
        "  layers:                    # input sizes are inferred; `dltrain check` prints every shape",
        *[f"    - {layer}" for layer in layers],
        f"    - Linear: auto           # {output_note}",
        "",
        f"loss: {loss}",
        f"optimizer: {{type: AdamW, lr: {rate}, weight_decay: 0.01}}",
        "",
        "train:",
        f"  epochs: {epochs}",
        "  monitor: val_loss          # what best.pt and early stopping watch",
        "  early_stopping: {patience: 10}   # stop when val_loss has not improved for 10 epochs",
        "",
    ]
    return "\n".join(_aligned(lines))


def _aligned(lines: list[str]) -> list[str]:
    """Comments after a key start in one column, so that the file reads as a table."""
    out = []
    for line in lines:
        content, sep, comment = line.partition("  # ") if not line.startswith("#") else (line, "", "")
        if sep and content.strip():
            out.append(f"{content.rstrip():<43} # {comment.strip()}")
        else:
            out.append(line)
    return out


def _media_options(encoder) -> str:
    data = encoder.to_dict()
    keep = {"image": ("size", "channels"), "video": ("frames", "size", "channels"), "audio": ("sample_rate", "duration")}[encoder.type]
    return "".join(f", {key}: {data[key]}" for key in keep)


def _cnn(dims: int) -> list[str]:
    """A small network for files: two convolutions, pooling, one hidden layer."""
    if dims == 4:  # video: (channels, frames, height, width)
        conv, pool, adaptive = "Conv3d", "MaxPool3d", "AdaptiveAvgPool3d: {output_size: [2, 2, 2]}"
    else:
        conv, pool, adaptive = "Conv2d", "MaxPool2d", "AdaptiveAvgPool2d: {output_size: [4, 4]}"
    return [
        f"{conv}: {{out_channels: 16, kernel_size: 3, padding: 1}}",
        "ReLU",
        f"{pool}: 2",
        f"{conv}: {{out_channels: 32, kernel_size: 3, padding: 1}}",
        "ReLU",
        adaptive,
        "Flatten",
        "Linear: 64",
        "ReLU",
    ]


def init(data: str | Path, target: str | None = None, output: str | Path | None = None) -> str:
    """Write the starter config to `output` (never over an existing file), or return it."""
    text = starter_config(data, target, output)
    if output is not None:
        path = Path(output)
        if path.exists():
            raise UsageError(f"{path} exists: dltrain init never writes over a file; give another -o")
        from dltrain.files import write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return text

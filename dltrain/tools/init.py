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
    from dltrain.data.encoders import file_types, tabular_types
    from dltrain.data.remote import is_remote, local_copy
    from dltrain.data.sources import FOLDER_TYPES, ResolvedSource, read_table, resolve_source

    if isinstance(data, str) and is_remote(data):  # s3://, gs://, az://, https://: written as it is
        try:
            source = resolve_source(data, lambda value, key: Path(value))
        except ValueError as error:
            raise UsageError(f"{data}: {error}") from None
        relative = data
        table = read_table(local_copy(source))
    else:
        data = Path(data)
        if not data.exists():
            generated = ("data", "generated") in zip(data.parts, data.parts[1:])  # where `make data` writes the examples
            hint = "; the example data under data/generated is made by the shipped generators: run make data first" if generated else ""
            raise UsageError(f"{data}: no such file or folder{hint}")
        where = Path(output).resolve().parent if output else Path.cwd()
        try:
            source = resolve_source(str(data.resolve()), lambda value, key: Path(value))
        except ValueError as error:
            raise UsageError(f"{data}: {error}") from None
        relative = os.path.relpath(data.resolve(), where)
        table = read_table(ResolvedSource(source.type, path=source.path))
    folder = source.type in FOLDER_TYPES
    target = target or ("label" if folder else None)
    if target is None:
        raise UsageError(f"give the column to predict: dltrain init {data} --target COLUMN (its columns: {', '.join(table.columns)})")
    if target not in table.columns:
        from dltrain.components import suggest

        raise DataError(f"column '{target}' is not in {data}.{suggest(target, list(table.columns))} Its columns: {', '.join(table.columns)}")
    target_type = _inferred(table[target].dropna(), is_target=True)
    target_type = target_type.type if target_type else "lists"
    if target_type not in _TASKS:
        raise DataError(f"column '{target}' looks like {target_type}, which dltrain cannot predict: give a column of classes or numbers")
    loss, output_note = _TASKS[target_type]
    name = Path(data).stem.split(".")[0].replace(" ", "_") or "model"
    lines = [
        f"# A starter config made by `dltrain init {data} --target {target}`: edit it, then `dltrain fit` it.",
        f"name: {name}                # the run's folder: runs/{name}",
        "seed: 0                      # one seed for splits, initial weights and shuffling",
        "",
        "data:",
        f"  source: {relative}        # " + ("read through fsspec, cached by its ETag" if relative == data else "relative to this file"),
    ]
    rows = len(table)
    id_column = None
    if folder:
        kind = source.type.rstrip("s") if source.type != "images" else "image"
        options, dims = _media(kind, table["path"])
        lines += [
            "  inputs:                    # the files, decoded once and cached",
            f"    - {{column: path, type: {kind}{options}}}",
            f"  target: {target}               # the class folder of each file",
        ]
        layers = _cnn(dims)
    else:
        plan = _plan_columns(table, target)
        id_column = next((c for c, role, _ in plan if role == "id"), None)
        tabular = [(c, why) for c, role, why in plan if role in tabular_types()]
        media = [(c, role) for c, role, _ in plan if role in file_types()]
        texts = [c for c, role, _ in plan if role == "text"]
        lines.append("  inputs:                    # the columns the model reads, with their types (as inferred)")
        if media or (texts and len(tabular) < 3):
            # a file or text column is the signal; it must be the only input (one tensor per row)
            chosen, kind = media[0] if media else (texts[0], "text")
            if kind == "text":
                lines.append(f"    - {{column: {chosen}, type: text}}   # words -> token ids; the vocabulary is fitted on the training rows")
                layers = _text_layers()
            else:
                options, dims = _media(kind, table[chosen])
                lines.append(f"    - {{column: {chosen}, type: {kind}{options}}}   # paths of files, decoded once and cached")
                layers = _cnn(dims)
            for column, role, _ in plan:
                if column != chosen and role not in ("id", "left out"):
                    lines.append(f"    # - {{column: {column}, type: {role}}}   left out: the {kind} column must be the only input")
        else:
            features = 0
            for column, role, why in plan:
                if role in tabular_types():
                    shape = _numeric_shape(table[column]) if role == "numeric" else None
                    if shape is not None:
                        lines.append(f"    - {{column: {column}, type: numeric, transform: quantile}}   # {why}; {shape}: to a normal distribution")
                    else:
                        lines.append(f"    - {{column: {column}, type: {role}}}   # {why}")
                    features += table[column].nunique() + 1 if role == "category" else 5 if role == "date" else 1
                elif role not in ("id", "left out"):
                    lines.append(f"    # - {{column: {column}, type: {role}}}   left out: a {role} column must be the only input")
            if features == 0:
                raise DataError(f"{data}: no column but '{target}' can be an input (numbers, categories, text or file paths)")
            width, depth, dropout, why = _mlp_size(rows, features)
            layers = []
            for _ in range(depth):
                layers += [f"Linear: {width}", "ReLU"] + ([f"Dropout: {dropout}"] if dropout else [])
            layers[0] += f"   # {why}"
        for column, role, why in plan:
            if role in ("id", "left out"):
                lines.append(f"    # - {column}            left out: {why}")
        lines.append(f"  target: {{column: {target}, type: {target_type}}}")
        if target_type == "numeric" and (said := _target_transform(table[target])) is not None:
            transform, reason = said
            lines.append(f"  target_transform: {transform}   # {reason}; metrics and predictions are in the target's own units")
        if id_column is not None:
            lines.append(f"  id: {id_column}                 # copied into predict's output to name each row")
    # small data: more epochs of small batches; early stopping ends them when validation stalls
    batch, epochs, patience, rate = (16, 300, 20, 0.002) if rows < 1_000 else (64, 200, 20, 0.002) if rows < 20_000 else (256, 60, 10, 0.001)
    if folder:
        epochs, patience = min(epochs, 50), 10
    balance = None if folder or target_type == "numeric" else _imbalance(table[target])
    split_note = "stratified by class, seeded" if target_type != "numeric" else "random rows, seeded"
    lines += [
        f"  split: {{train: 0.8, val: 0.1, test: 0.1}}   # {split_note}",
        f"  batch_size: {batch}            # rows per step",
        "",
        "model:",
        "  layers:                    # input sizes are inferred; `dltrain check` prints every shape",
        *[f"    - {layer}" for layer in layers],
        f"    - Linear: auto           # {output_note}",
        "",
        *_loss_lines(loss, target_type, balance),
        f"optimizer: {{type: AdamW, lr: {rate}, weight_decay: 0.01}}",
        "scheduler: {type: ReduceLROnPlateau, factor: 0.5, patience: 5}   # halve the rate when val_loss stalls for 5 epochs",
        "",
        "train:",
        f"  epochs: {epochs}                # a ceiling: early stopping ends training sooner",
        "  monitor: val_loss          # what best.pt and early stopping watch",
        f"  early_stopping: {{patience: {patience}}}   # stop when val_loss has not improved for {patience} epochs (longer on a small validation split)",
        "",
    ]
    return "\n".join(_aligned(lines))


SKEW = 2.0  # a numeric column more skewed than this is mapped through its quantiles
OUTLIERS = 0.01  # ... or one with more than this share of values far outside its middle half
FAR = 5.0  # "far": beyond this many interquartile ranges from the quartiles
RARE = 0.35  # a class with fewer rows than this share of an even split is rare


def _numeric_shape(series) -> str | None:
    """Why a numeric input is better read through its quantiles (skew, heavy tails), or None."""
    import pandas as pd

    from dltrain.data.encoders import parse_numbers

    values = parse_numbers(series)[0].dropna() if not pd.api.types.is_numeric_dtype(series) else series.dropna().astype("float64")
    if values.nunique() <= 10:  # a few levels: quantiles would only reorder them
        return None
    skew = float(values.skew())
    low, high = values.quantile([0.25, 0.75])
    spread = high - low
    far = float(((values < low - FAR * spread) | (values > high + FAR * spread)).mean()) if spread > 0 else 0.0
    if abs(skew) > SKEW:
        return f"skew {skew:.1f}"
    if far > OUTLIERS:
        return f"heavy tails: {far:.0%} of values beyond {FAR:g} interquartile ranges"
    return None


def _target_transform(series) -> tuple[str, str] | None:
    """A regression target with a long tail: log when every value is positive, else quantile."""
    from dltrain.data.encoders import parse_numbers

    values = parse_numbers(series)[0].dropna()
    if values.nunique() <= 10:
        return None
    skew = float(values.skew())
    if skew > 1.0 and float(values.min()) > 0:
        return "log", f"all positive, skew {skew:.1f}"
    if abs(skew) > SKEW:
        return "quantile", f"skew {skew:.1f}"
    return None


def _mlp_size(rows: int, features: int) -> tuple[int, int, float, str]:
    """Width, depth and dropout from the rows (how much a model can learn from) more than from the
    inputs: a few inputs can still need a wide network (Gorishniy et al. 2021: MLPs of 2-3 layers of
    64-512 units are the strong default on tables)."""
    width = 32 if rows < 1_000 else 128 if rows < 10_000 else 256  # 64 on 442 rows of diabetes: R² 0.04; 32: 0.145
    width = max(width, min(512, 2 ** math.ceil(math.log2(max(features, 1)))))
    depth = 2 if rows < 20_000 else 3
    dropout = 0.1 if rows < 5_000 else 0.05
    return width, depth, dropout, f"{depth} layers of {width}: sized by the {rows:,} rows"


def _imbalance(series) -> tuple[str, float] | None:
    """The rarest class and its share of the rows, when it is rare against an even split."""
    counts = series.dropna().astype(str).value_counts()
    if len(counts) < 2:
        return None
    share = float(counts.iloc[-1] / counts.sum())
    return (str(counts.index[-1]), share) if share < RARE / len(counts) else None


def _loss_lines(loss: str, target_type: str, balance: tuple[str, float] | None) -> list[str]:
    if balance is None:
        return [f"loss: {loss}"]
    name, share = balance
    argument = "pos_weight" if target_type == "binary" else "weight"
    return [f"loss: {{type: {loss}, {argument}: balanced}}   # the rarest class, {name}, is {share:.1%} of the rows: weighted by the inverse of its count"]


def _inferred(series, is_target: bool):
    """infer_type, or None for cells that hold lists or mappings (JSON), which no type takes as they are."""
    from dltrain.data.encoders import infer_type

    try:
        return infer_type(series, is_target=is_target)
    except TypeError:
        return None


def _plan_columns(table, target: str) -> list[tuple[str, str, str]]:
    """(column, role, why) for every column but the target: a type, or `id` / `left out` with the reason."""
    from dltrain.data.encoders import MAX_CATEGORIES, keys, looks_like_id, looks_like_names, tabular_types

    plan = []
    for column in table.columns:
        if column == target:
            continue
        series = table[column]
        if series.isna().all():
            plan.append((column, "left out", "the column is empty"))
            continue
        nested = bool(series.dropna().map(lambda v: isinstance(v, (list, tuple, dict)) or hasattr(v, "shape")).any())
        inferred = None if nested else _inferred(series.dropna(), is_target=False)
        if inferred is None:
            plan.append((column, "left out", "its cells hold lists or mappings; flatten them into columns (or give type sequence for lists of numbers)"))
            continue
        tabular = inferred.type in tabular_types()
        if inferred.type == "date":
            plan.append((column, "date", inferred.reason))
        elif (tabular or inferred.type == "text") and looks_like_id(series) and (inferred.type != "text" or looks_like_names(series)):
            plan.append((column, "id", "a different value in every row, so an id"))
        elif inferred.type == "text" and looks_like_id(series):
            plan.append((column, "unique text", inferred.reason))  # decided below, once the other columns are known
        elif inferred.type == "category" and (distinct := keys(series).nunique()) > MAX_CATEGORIES:
            plan.append((column, "left out", f"{distinct} distinct values, one-hot would add {distinct + 1} features; list it with type category to use it"))
        else:
            plan.append((column, inferred.type, inferred.reason))
    beside_table = any(role in tabular_types() or role == "date" for _, role, _ in plan)
    # sentences in every row: the text input alone; beside table columns (text cannot join them), the row's id
    return [
        (column, "id", "a different text in every row, beside table columns: an id") if role == "unique text" and beside_table
        else (column, "text", why) if role == "unique text" else (column, role, why)
        for column, role, why in plan
    ]  # fmt: skip


def _media(kind: str, paths) -> tuple[str, int]:
    """The options to write for a column of files, and the model input's dimensions.

    Images of several sizes (the usual case for photos) are resized to the middle size of a sample,
    at most 64 pixels a side to keep training quick on a CPU; mixed grayscale and colour become colour.
    """
    from dltrain.data.encoders import ENCODERS
    from dltrain.data.images import probe_image

    options: dict = {}
    if kind == "image":
        probed = [probe_image(p, {}) for p in paths.dropna().head(500)]
        shapes = [p for p in probed if isinstance(p, tuple)]
        if len({(h, w) for h, w, _ in shapes}) > 1:
            height = sorted(h for h, _, _ in shapes)[len(shapes) // 2]
            width = sorted(w for _, w, _ in shapes)[len(shapes) // 2]
            scale = min(1.0, 64 / max(height, width))
            options["size"] = [max(8, round(height * scale)), max(8, round(width * scale))]
        if len({c for _, _, c in shapes}) > 1:
            options["channels"] = 3
    encoder = ENCODERS.get(kind).fit("path", paths.dropna().head(2000), options, "skip")
    return _media_options(encoder), len(encoder.shape)


def _text_layers() -> list[str]:
    return [
        "Embedding: {embedding_dim: 32, padding_idx: 0}   # num_embeddings: the vocabulary size",
        "Transpose: [1, 2]          # (batch, length, 32) -> (batch, 32, length) for Conv1d",
        "Conv1d: {out_channels: 64, kernel_size: 3, padding: 1}",
        "ReLU",
        "AdaptiveMaxPool1d: 1       # the strongest response anywhere in the text",
        "Flatten",
        "Dropout: 0.2",
    ]


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


SCHEMA = Path("schema") / "dltrain.schema.json"


def schema_line(folder: Path) -> str:
    """The comment that gives editors (the YAML language server: VS Code, Neovim, JetBrains) the
    config's JSON Schema, relative to the config's folder: the schema of the dltrain checkout this
    runs from, or one in a folder above the config (`dltrain schema -o schema/dltrain.schema.json`
    writes it). Empty when there is none to point at."""
    import os

    candidates = [parent / SCHEMA for parent in (folder, *folder.parents)]
    candidates.append(Path(__file__).resolve().parents[2] / SCHEMA)  # a checkout of dltrain
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        return ""
    return f"# yaml-language-server: $schema={Path(os.path.relpath(found, folder)).as_posix()}\n"


def init(data: str | Path, target: str | None = None, output: str | Path | None = None) -> str:
    """Write the starter config to `output` (never over an existing file), or return it."""
    text = starter_config(data, target, output)
    text = schema_line(Path(output).resolve().parent if output is not None else Path.cwd()) + text
    if output is not None:
        path = Path(output)
        if path.exists():
            raise UsageError(f"{path} exists: dltrain init never writes over a file; give another -o")
        from dltrain.files import write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return text

"""Hugging Face datasets as a source: `data.source: {type: huggingface, path: NAME_OR_DIR, split, config}`.

A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` is read with
`datasets.load_from_disk`; any other path (a folder of Parquet, CSV or JSON files, or a hub name)
with `datasets.load_dataset(path, name=config, split=split)`. `datasets` is imported only here, only
for this source type.

Features become dltrain's columns without files of the user's own: Value numbers and bools stay
numbers and bools (numeric or binary by the usual inference); strings stay text (category or text
by inference); a ClassLabel becomes its class names; an Image becomes the path of an image file
(its own where it has a local one, else written once into dltrain's cache, under the dataset's
fingerprint); an Audio a wav file likewise; a List or Sequence of numbers a `sequence` column.
Other features (nested mappings, lists of text, arrays) are left out with a warning.
"""

from __future__ import annotations

import io
import math
import os
import wave
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dltrain.console import warn
from dltrain.errors import DataError, first_line

INSTALL = "pip install 'dltrain[huggingface]'"
DEFAULT_SPLIT = "train"
_NUMBERS = ("int", "uint", "float", "double", "half", "decimal")


def _datasets():
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is None:  # sys.modules["datasets"] = None reads as missing too
        raise DataError(f"a huggingface source needs the `datasets` library: {INSTALL}", key=("data", "source", "type"))
    return datasets


def is_saved(path: str | Path) -> bool:
    """A folder written by save_to_disk (a Dataset, or a DatasetDict of splits)."""
    folder = Path(path)
    return folder.is_dir() and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file())


def looks_like_hub_name(path: str) -> bool:
    """`name` or `owner/name`: what a hub dataset is called (not a path that is meant to exist here)."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", path)) and not path.endswith((".csv", ".parquet", ".json", ".jsonl"))


def _label(path: str, split: str, config: str | None) -> str:
    return f"{path} ({'config ' + config + ', ' if config else ''}split {split})"


def load(source) -> Any:
    """The source's split as a `datasets.Dataset`; any problem is a DataError naming the path."""
    return _load(source.path, source.split or DEFAULT_SPLIT, source.config, _stamp(source.path))


def _stamp(path: str) -> int:
    """When a saved dataset was last written: a dataset saved again is loaded again."""
    folder = Path(path)
    try:
        return max((item.stat().st_mtime_ns for item in (folder / "dataset_dict.json", folder / "state.json") if item.is_file()), default=0)
    except OSError:
        return 0


@lru_cache(maxsize=8)
def _load(path: str, split: str, config: str | None, stamp: int = 0):
    datasets = _datasets()
    if is_saved(path):
        try:
            found = datasets.load_from_disk(path)
        except Exception as error:
            raise DataError(f"{path}: cannot read it as a saved Hugging Face dataset: {first_line(error)}") from None
        if config:
            warn(f"{path} is a dataset saved with save_to_disk, which has one configuration: config {config!r} is not used", key=("huggingface", path, "config"))
        if isinstance(found, datasets.DatasetDict):
            if split not in found:
                raise _unknown_split(path, split, list(found))
            return found[split]
        own = str(found.split) if found.split else DEFAULT_SPLIT
        if split != own:
            raise _unknown_split(path, split, [own])
        return found
    try:
        return datasets.load_dataset(path, name=config, split=split)
    except ValueError as error:
        if "split" in str(error).lower():
            raise _unknown_split(path, split, _split_names(datasets, path, config), first_line(error)) from None
        raise _not_loadable(path, config, error) from None
    except Exception as error:  # the hub's and the builders' own errors
        raise _not_loadable(path, config, error) from None


def _split_names(datasets, path: str, config: str | None) -> list[str]:
    try:
        return list(datasets.get_dataset_split_names(path, config_name=config))
    except Exception:
        return []


def _unknown_split(path: str, split: str, names: list[str], said: str = "") -> DataError:
    known = f"its splits: {', '.join(names)}" if names else said or "its splits could not be listed"
    return DataError(f"{path} has no split '{split}'; {known}. Give one as data.source.split", key=("data", "source", "split"))


def _not_loadable(path: str, config: str | None, error: Exception) -> DataError:
    said = first_line(error)
    if os.path.isabs(path) or Path(path).exists():
        return DataError(
            f"{path}: cannot load it as a Hugging Face dataset: {said}. A huggingface source is a folder "
            "written by save_to_disk, or a folder of Parquet, CSV or JSON files",
            key=("data", "source", "path"),
        )
    return DataError(
        f"{path}: not a local folder, and it could not be loaded as a Hugging Face hub dataset"
        f"{' (config ' + config + ')' if config else ''}: {said}. A hub name needs network access, or the dataset "
        "already in the Hugging Face cache (HF_HOME, ~/.cache/huggingface) with HF_DATASETS_OFFLINE=1; "
        "a local folder is found relative to the config file's folder",
        key=("data", "source", "path"),
    )


# ----- features -> column types


def _kind(feature) -> str:
    """What a feature becomes: number, bool, string, date, label, image, audio, sequence, or other."""
    datasets = _datasets()
    features = datasets.features
    if isinstance(feature, features.ClassLabel):
        return "label"
    if isinstance(feature, features.Image):
        return "image"
    if isinstance(feature, features.Audio):
        return "audio"
    if isinstance(feature, features.Value):
        dtype = feature.dtype
        if dtype == "bool":
            return "bool"
        if dtype.startswith(_NUMBERS):
            return "number"
        if dtype in ("string", "large_string"):
            return "string"
        if dtype.startswith(("timestamp", "date")):
            return "date"
        return "other"
    inner = getattr(feature, "feature", None)
    if isinstance(feature, (getattr(features, "List", ()), getattr(features, "LargeList", ()), features.Sequence)) and inner is not None:
        if isinstance(inner, features.Value) and (inner.dtype.startswith(_NUMBERS) or inner.dtype == "bool"):
            return "sequence"
    return "other"


def _describe(feature) -> str:
    text = repr(feature)
    return text if len(text) <= 80 else text[:77] + "..."


def column_types(source) -> dict[str, str | None]:
    """The column types the dataset's features fix: sequence for lists of numbers, category for a
    ClassLabel of more than two classes, image, audio; None for a feature that is left out. Other
    columns are inferred."""
    fixed: dict[str, str | None] = {}
    for name, feature in load(source).features.items():
        kind = _kind(feature)
        if kind in ("sequence", "image", "audio"):
            fixed[name] = kind
        elif kind == "label" and feature.num_classes > 2:  # two: binary, as inference finds
            fixed[name] = "category"
        elif kind == "other":
            fixed[name] = None
    return fixed


def check_target(source, target: str) -> None:
    """A target whose feature dltrain cannot read is a DataError now, not a missing column later."""
    dataset = load(source)
    feature = dataset.features.get(target)
    if feature is not None and _kind(feature) in ("other", "image", "audio"):
        raise DataError(
            f"column '{target}' of {_label(source.path, source.split or DEFAULT_SPLIT, source.config)} is a "
            f"{_describe(feature)} feature, which cannot be a target: give a column of numbers, text or a ClassLabel",
            key=("data", "target"),
        )


def read(source) -> pd.DataFrame:
    """The split as a table: every feature dltrain can read, as its column type reads it."""
    return next(chunks(source, None))


def chunks(source, rows: int | None, columns: list[str] | None = None):
    """The split `rows` at a time (None: all at once), as tables."""
    dataset = load(source)
    label = _label(source.path, source.split or DEFAULT_SPLIT, source.config)
    kinds = {name: _kind(feature) for name, feature in dataset.features.items()}
    kept = [name for name, kind in kinds.items() if kind != "other" and (columns is None or name in columns)]
    for name, kind in kinds.items():
        if kind == "other" and (columns is None or name in columns):
            warn(
                f"column '{name}' of {label} is a {_describe(dataset.features[name])} feature, which dltrain cannot "
                "train on: left out of the inputs",
                key=("huggingface", source.path, name),
            )
    if not kept:
        raise DataError(f"{label}: none of its features is one dltrain reads ({', '.join(kinds) or 'none'})")
    dataset = dataset.select_columns(kept)
    datasets = _datasets()
    for name in kept:  # files as bytes and paths, not decoded (Audio would need torchcodec)
        if kinds[name] in ("image", "audio"):
            feature = dataset.features[name]
            dataset = dataset.cast_column(name, type(feature)(decode=False))
    step = rows or max(len(dataset), 1)
    folder = _cache_root(dataset, source)
    for start in range(0, max(len(dataset), 1), step):
        part = dataset.select(range(start, min(start + step, len(dataset)))) if len(dataset) else dataset
        frame = part.with_format("arrow")[:].to_pandas() if len(part) else pd.DataFrame(columns=kept)
        for name in kept:
            frame[name] = _column(frame[name], kinds[name], dataset.features[name], folder / name, start, datasets)
        yield frame


def _cache_root(dataset, source) -> Path:
    from dltrain.data.media import cache_folder

    key = getattr(dataset, "_fingerprint", None) or "unknown"
    return cache_folder() / "huggingface" / str(key)


def _column(series: pd.Series, kind: str, feature, folder: Path, start: int, datasets) -> pd.Series:
    if kind == "label":
        names = feature.names
        return series.map(lambda v: names[int(v)] if v is not None and not _nan(v) and 0 <= int(v) < len(names) else None).astype(object)
    if kind == "sequence":
        return series.map(lambda v: None if v is None else " ".join(_number(x) for x in v))
    if kind == "image":
        return pd.Series([_image_file(v, folder, start + i) for i, v in enumerate(series.tolist())], index=series.index, dtype=object)
    if kind == "audio":
        return pd.Series([_audio_file(v, folder, start + i, feature) for i, v in enumerate(series.tolist())], index=series.index, dtype=object)
    return series


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _number(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tiff"}


def _own_path(cell: dict, extensions: tuple[str, ...]) -> str | None:
    path = cell.get("path")
    if path and not cell.get("bytes") and os.path.isabs(path) and os.path.isfile(path) and path.lower().endswith(extensions):
        return path
    if path and os.path.isfile(path) and path.lower().endswith(extensions):
        return os.path.abspath(path)
    return None


def _image_file(cell, folder: Path, row: int) -> str | None:
    """The path of the cell's image: its own file where it has one here, else one written into the cache."""
    from dltrain.data.images import EXTENSIONS

    if cell is None:
        return None
    own = _own_path(cell, EXTENSIONS)
    if own:
        return own
    data = cell.get("bytes")
    if not data:
        return None  # a path of another machine: the image encoder says the row cannot be read
    from PIL import Image

    for extension in _FORMATS.values():  # written by an earlier read
        if (folder / f"{row}{extension}").is_file():
            return str(folder / f"{row}{extension}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            extension = _FORMATS.get(image.format or "")
            if extension is None:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                data, extension = buffer.getvalue(), ".png"
    except Exception:
        return None
    return _keep(folder / f"{row}{extension}", data)


def _audio_file(cell, folder: Path, row: int, feature) -> str | None:
    """The path of a wav file of the cell's sound: its own, its bytes where they are a wav, else decoded."""
    from dltrain.data.audio import EXTENSIONS

    if cell is None:
        return None
    own = _own_path(cell, EXTENSIONS)
    if own:
        return own
    target = folder / f"{row}.wav"
    if target.is_file():
        return str(target)
    data = cell.get("bytes")
    if data and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _keep(target, data)
    if not data and not (cell.get("path") and os.path.isfile(cell["path"])):
        return None
    try:
        samples, rate = _decoded_audio(cell, feature)
    except Exception as error:
        raise DataError(
            f"an Audio cell (row {row}) is not a wav file and could not be decoded ({first_line(error)}): the "
            "`datasets` library decodes other formats with torchcodec (pip install torchcodec)"
        ) from None
    return _keep(target, _wav_bytes(samples, rate))


def _decoded_audio(cell: dict, feature) -> tuple[np.ndarray, int]:
    import dataclasses

    decoded = dataclasses.replace(feature, decode=True).decode_example(cell)
    if isinstance(decoded, dict):  # older datasets: {"array", "sampling_rate"}
        return np.asarray(decoded["array"]), int(decoded["sampling_rate"])
    got = decoded.get_all_samples()  # torchcodec's AudioDecoder
    return got.data.numpy(), int(got.sample_rate)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM wav of float samples in [-1, 1]: (frames,), or (channels, frames)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.shape[0] > samples.shape[1]:  # (frames, channels)
        samples = samples.T
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2").T  # interleaved frames
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _keep(path: Path, data: bytes) -> str:
    from dltrain.files import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, sync=False)
    except OSError as error:
        raise DataError(
            f"cannot write {path} ({error.strerror or error}): dltrain writes the images and sounds of a Hugging Face "
            "dataset into its cache; set DLTRAIN_CACHE to a folder that can be written"
        ) from None
    return str(path)

"""Images: a folder of class subfolders as a table, and the image encoder.

Images are decoded once, in parallel over the cores, into one uint8 tensor (rows, channels,
height, width) that stays in memory; a cache on disk, keyed by the files (path, size, modification
time) and the encoder's options, lets the next run on the same files start without decoding.
Batches are turned into floats, augmented (training only) and normalized with the training
split's per-channel mean and std as they are drawn, on the device.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from dltrain.console import err, note, warn
from dltrain.errors import DataError
from dltrain.files import write_atomic

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PARALLEL_FROM = 256  # fewer images decode faster in this process than in workers
_CHUNK = 256


def is_image_path(value: str) -> bool:
    return value.lower().endswith(EXTENSIONS)


def folder_table(folder: Path) -> pd.DataFrame:
    """A folder with one subfolder per class -> columns `path` (absolute) and `label`."""
    folder = Path(folder)
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows, empty = [], []
    for class_dir in classes:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_path(p.name))
        if not files:
            empty.append(class_dir.name)
        rows += [(str(p.resolve()), class_dir.name) for p in files]
    loose = [p for p in folder.iterdir() if p.is_file() and is_image_path(p.name)]
    if not rows:
        if loose:
            raise DataError(
                f"{folder}: its {len(loose)} images lie directly in it; for training, put them in one "
                f"subfolder per class ({folder}/cat/1.png, {folder}/dog/2.png)"
            )
        raise DataError(f"{folder}: no images ({', '.join(e[1:] for e in EXTENSIONS)}) in it or its subfolders")
    if empty:
        raise DataError(
            f"{folder}: class folder(s) {', '.join(empty)} hold no images; remove them or add images "
            f"({', '.join(e[1:] for e in EXTENSIONS)})"
        )
    if loose:
        warn(f"{folder}: {len(loose)} image(s) lie outside the class subfolders and are left out")
    return pd.DataFrame(rows, columns=["path", "label"])


def list_images(pattern: str | Path) -> list[Path]:
    """An image file, a folder (searched recursively) or a glob pattern -> image files, sorted."""
    path = Path(pattern)
    if path.is_file():
        return [path.resolve()]
    if path.is_dir():
        return sorted(p.resolve() for p in path.rglob("*") if p.is_file() and is_image_path(p.name))
    return sorted(Path(p).resolve() for p in glob.glob(str(pattern), recursive=True) if is_image_path(p))


# ----- decoding


def _channels_of(mode: str) -> int:
    return 1 if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


def _probe(path: str) -> tuple[int, int, int] | str:
    """(height, width, channels) from the file's header, or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width, _channels_of(image.mode)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        return _reason(error)


def _decode(path: str, size: tuple[int, int], channels: int) -> np.ndarray | str:
    """(channels, height, width) uint8, or why the file cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        return _reason(error)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _probe_chunk(paths: list[str]) -> list:
    return [_probe(p) for p in paths]


def _decode_chunk(args: tuple[list[str], tuple[int, int], int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    paths, size, channels = args
    out = np.zeros((len(paths), channels, *size), dtype=np.uint8)
    failed = []
    for i, path in enumerate(paths):
        result = _decode(path, size, channels)
        if isinstance(result, str):
            failed.append((i, result))
        else:
            out[i] = result
    return out, failed


def _map(function, chunks: list, total: int, label: str) -> list:
    """`function` over chunks: in worker processes for many images, with a bar on a terminal."""
    workers = min(os.cpu_count() or 1, len(chunks))
    if total < _PARALLEL_FROM or workers < 2:
        return [function(c) for c in chunks]
    # fork starts workers in milliseconds and they need only Pillow and NumPy; elsewhere spawn
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    results = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        if err().is_terminal:
            from rich.progress import Progress

            with Progress(console=err(), transient=True) as bar:
                task = bar.add_task(label, total=total)
                for result, chunk in zip(pool.map(function, chunks), chunks):
                    results.append(result)
                    bar.advance(task, len(chunk[0]) if isinstance(chunk, tuple) else len(chunk))
        else:
            results = list(pool.map(function, chunks))
    return results


@dataclass(frozen=True)
class Decoded:
    pixels: torch.Tensor  # (rows kept, channels, height, width) uint8
    kept: np.ndarray  # bool per input row
    failed: list[tuple[str, str]]  # (path, why)


def cache_folder() -> Path:
    return Path(os.environ.get("DLTRAIN_CACHE") or Path.home() / ".cache" / "dltrain")


def _cache_key(paths: list[str], size, channels: int) -> str | None:
    digest = hashlib.sha256(json.dumps({"size": list(size), "channels": channels, "version": 1}).encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            return None  # a missing file: decode to say which
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def decode_images(paths: list[str], size: tuple[int, int], channels: int, use_cache: bool = True) -> Decoded:
    """Decode every file once (or load the result from the cache); failures are returned, not raised."""
    key = _cache_key(paths, size, channels) if use_cache else None
    cache_file = cache_folder() / "images" / f"{key}.pt" if key else None
    if cache_file is not None and cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            note(f"images: {len(paths)} loaded from the cache ({cache_file})")
            return Decoded(cached["pixels"], cached["kept"].numpy(), [tuple(f) for f in cached["failed"]])
        except Exception:  # a damaged cache file is decoded again and replaced
            pass
    start = time.perf_counter()
    chunks = [(paths[i : i + _CHUNK], tuple(size), channels) for i in range(0, len(paths), _CHUNK)]
    results = _map(_decode_chunk, chunks, len(paths), "decoding images")
    kept = np.ones(len(paths), dtype=bool)
    failed = []
    for n, (_, chunk_failed) in enumerate(results):
        for i, why in chunk_failed:
            kept[n * _CHUNK + i] = False
            failed.append((paths[n * _CHUNK + i], why))
    pixels = np.concatenate([r[0] for r in results]) if results else np.zeros((0, channels, *size), np.uint8)
    decoded = Decoded(torch.from_numpy(pixels[kept]), kept, failed)
    note(f"images: {len(paths)} decoded in {time.perf_counter() - start:.1f} s ({size[0]}x{size[1]}, {channels} channel(s))")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"pixels": decoded.pixels, "kept": torch.from_numpy(kept), "failed": [list(f) for f in failed]}, buffer)
        write_atomic(cache_file, buffer.getvalue())
    return decoded


# ----- the encoder


@dataclass
class ImageEncoder:
    """Image paths -> (channels, height, width), normalized per channel with training statistics."""

    column: str
    size: tuple[int, int] = (0, 0)
    channels: int = 3
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    augment: list = field(default_factory=list)  # as written in the config
    type: ClassVar[str] = "image"
    options: ClassVar[tuple[str, ...]] = ("size", "channels", "augment")
    tabular: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        size = options.get("size")
        if size is not None and not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
        ):
            return f"size is [height, width] in pixels, like [32, 32]; found {size!r}"
        if options.get("channels") not in (None, 1, 3):
            return f"channels is 1 (grayscale) or 3 (RGB); found {options['channels']!r}"
        if "augment" in options:
            from dltrain.components import ComponentError
            from dltrain.data.augment import parse_augmentations

            try:
                parse_augmentations(options["augment"])
            except ComponentError as error:
                return f"augment: {error}"
        return None

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise") -> ImageEncoder:
        """Settle size and channels from the files' headers (mean and std come from `fit_pixels`)."""
        paths = series.astype(str).tolist()
        size, channels = options.get("size"), options.get("channels")
        if size is None or channels is None:
            chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
            probes = [p for chunk in _map(_probe_chunk, chunks, len(paths), "reading image headers") for p in chunk]
            good = [p for p, path in zip(probes, paths) if not isinstance(p, str)]
            bad = [(path, p) for p, path in zip(probes, paths) if isinstance(p, str)]
            if bad and on_error == "raise":
                raise_unreadable(bad)
            if not good:
                raise DataError(f"column '{column}': none of its {len(paths)} images can be read")
            if size is None:
                size = _one_size(column, Counter((h, w) for h, w, _ in good))
            if channels is None:
                channels = _one_channel_count(column, Counter(c for _, _, c in good))
        return cls(column, tuple(size), int(channels), augment=list(options.get("augment") or []))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def encode(self, series: pd.Series, use_cache: bool = True, on_error: str = "raise") -> tuple[torch.Tensor, np.ndarray]:
        """The images of `series` as uint8 (kept rows, C, H, W), and which rows were kept."""
        decoded = decode_images(series.astype(str).tolist(), self.size, self.channels, use_cache)
        if decoded.failed:
            if on_error == "raise":
                raise_unreadable(decoded.failed)
            shown = "; ".join(f"{path} ({why})" for path, why in decoded.failed[:5])
            more = f" and {len(decoded.failed) - 5} more" if len(decoded.failed) > 5 else ""
            warn(f"{len(decoded.failed)} image(s) could not be read and were skipped (data.on_error: skip): {shown}{more}")
        return decoded.pixels, decoded.kept

    def fit_pixels(self, pixels: torch.Tensor) -> None:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        for chunk in pixels.split(4096):
            values = chunk.to(torch.float64).div_(255)
            total += values.sum(dim=(0, 2, 3))
            squares += values.pow(2).sum(dim=(0, 2, 3))
        count = max(1, pixels.shape[0] * self.size[0] * self.size[1])
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
        self.mean = mean.tolist()
        self.std = [s if s > 1e-6 else 1.0 for s in std.tolist()]

    def batch_transform(self, train: bool) -> BatchTransform:
        from dltrain.data.augment import build_augmentations

        return BatchTransform(self.mean, self.std, build_augmentations(self.augment) if train else [])

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "column": self.column,
            "size": list(self.size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "augment": self.augment,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ImageEncoder:
        return cls(data["column"], tuple(data["size"]), data["channels"], list(data["mean"]), list(data["std"]), list(data["augment"]))


class BatchTransform:
    """uint8 batch -> floats in [0, 1] -> augmentations (training only) -> normalized."""

    def __init__(self, mean: list[float], std: list[float], augmentations: list):
        self.mean = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
        self.augmentations = augmentations

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        x = x.float().div_(255)
        for augmentation in self.augmentations:
            x = augmentation(x, generator)
        return x.sub_(self.mean).div_(self.std)


def raise_unreadable(failed: list[tuple[str, str]]) -> None:
    shown = "; ".join(f"{path}: {why}" for path, why in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    raise DataError(
        f"{len(failed)} image(s) cannot be read: {shown}{more}. Fix or remove them, or set data.on_error: skip "
        "to leave them out with a warning"
    )


def _one_size(column: str, sizes: Counter) -> tuple[int, int]:
    if len(sizes) == 1:
        return next(iter(sizes))
    (h, w), _ = sizes.most_common(1)[0]
    listed = ", ".join(f"{a}x{b}: {n}" for (a, b), n in sizes.most_common(4))
    raise DataError(
        f"the images of column '{column}' have {len(sizes)} different sizes (height x width: {listed}"
        f"{', ...' if len(sizes) > 4 else ''}); give them one size to be resized to, e.g. "
        f"inputs: [{{column: {column}, type: image, size: [{h}, {w}]}}]"
    )


def _one_channel_count(column: str, channels: Counter) -> int:
    if len(channels) == 1:
        return next(iter(channels))
    raise DataError(
        f"the images of column '{column}' mix grayscale ({channels[1]}) and colour ({channels[3]}) images; "
        f"say which to convert them to: inputs: [{{column: {column}, type: image, channels: 3}}] (or 1)"
    )

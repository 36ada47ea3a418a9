"""Images: folders of class subfolders, and the image encoder.

Images are decoded once, in parallel over the cores, into one uint8 tensor (rows, channels,
height, width) that stays in memory, and cached on disk (see `media`). Batches are turned into
floats, augmented (training only) and normalized with the training split's per-channel mean and
std as they are drawn, on the device.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np
import pandas as pd

from dltrain.data.media import (
    ChannelStatistics,
    FileColumn,
    Normalize,
    check_failures,
    folder_table,
    map_files,
    path_list,
    reason,
)
from dltrain.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image_path(value: str) -> bool:
    return str(value).lower().endswith(EXTENSIONS)


def is_image_file(path: Path) -> bool:
    return path.is_file() and is_image_path(path.name)


def image_folder_table(folder: Path) -> pd.DataFrame:
    return folder_table(folder, is_image_file, "image", EXTENSIONS)



def _channels_of(mode: str) -> int:
    return 1 if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


def probe_image(path: str, options: dict) -> tuple[int, int, int] | str:
    """(height, width, channels) from the file's header, or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width, _channels_of(image.mode)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # a bomb: more pixels than Pillow decodes
        return reason(error)


def decode_image(path: str | BinaryIO, options: dict) -> np.ndarray | str:
    """(channels, height, width) uint8, or why the file cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    height, width = options["size"]
    try:
        with Image.open(path) as image:
            image = image.convert("L" if options["channels"] == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # a bomb: more pixels than Pillow decodes
        return reason(error)
    return pixels[None] if options["channels"] == 1 else pixels.transpose(2, 0, 1)


@dataclass
class ImageEncoder(FileColumn):
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
    dtype: ClassVar[str] = "float"
    vocab_size: ClassVar[int | None] = None
    is_item: ClassVar = staticmethod(is_image_file)
    folder_table: ClassVar = staticmethod(image_folder_table)
    kind: ClassVar[str] = "images"
    what: ClassVar[str] = "image"
    decoder: ClassVar = staticmethod(decode_image)

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
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise", use_cache: bool = True) -> ImageEncoder:
        """Settle size and channels from the files' headers (mean and std come from the decoded training images: `use_statistics`)."""
        paths = path_list(series)
        size, channels = options.get("size"), options.get("channels")
        if size is None or channels is None:
            probes = map_files(probe_image, paths, {}, "reading image headers", cache="image-headers" if use_cache else None)
            good = [p for p in probes if not isinstance(p, str)]
            check_failures([(path, p) for p, path in zip(probes, paths) if isinstance(p, str)], on_error, "image")
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

    def describe(self) -> str:
        return f"{self.size[0]}x{self.size[1]} pixels, {self.channels} channel(s)"

    def decode_options(self) -> dict:
        return {"size": list(self.size), "channels": self.channels}

    def statistics(self) -> ChannelStatistics:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        return ChannelStatistics(self.channels)

    def use_statistics(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = mean, std

    def batch_transform(self, train: bool) -> Normalize:
        from dltrain.data.augment import build_augmentations

        return Normalize(self.mean, self.std, build_augmentations(self.augment) if train else [], dims=4)

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

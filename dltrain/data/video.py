"""Video columns: clips -> `frames` frames sampled evenly, resized -> (channels, frames, height, width).

A clip is a video file (mp4, avi, mov, mkv, webm; read through PyAV, the optional extra
`pip install dltrain[video]`) or a folder of frame images (no extra package), frames in name
order. Decoded once, in parallel, cached like images, and normalized per channel with the
training split's statistics.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np
import pandas as pd

from dltrain.data.images import is_image_file
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

EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def is_clip(path: Path | os.DirEntry) -> bool:
    """A video file, or a folder whose files are frame images."""
    if path.is_file():
        return path.name.lower().endswith(EXTENSIONS)
    if not path.is_dir():
        return False
    with os.scandir(path) as found:
        return any(is_image_file(e) for e in found)


def video_folder_table(folder: Path) -> pd.DataFrame:
    return folder_table(folder, is_clip, "clip", (*EXTENSIONS, "folders of frame images"), recursive=False)


def _read_frames(path: str | BinaryIO) -> list:
    """Every frame of a clip as a PIL image."""
    from PIL import Image

    source = Path(path) if isinstance(path, (str, os.PathLike)) else None  # else a file's contents (an upload)
    if source is not None and source.is_dir():
        frames = []
        for file in _frame_files(source):
            with Image.open(file) as image:
                image.load()
                frames.append(image.copy())
        return frames
    try:
        import av
    except ImportError:
        raise OSError("reading video files needs PyAV: pip install 'dltrain[video]' (or give folders of frame images)") from None
    with av.open(path) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def probe_clip(path: str, options: dict) -> tuple[int, int, int, int] | str:
    """(frames, height, width, channels) of a clip, or why it cannot be read."""
    try:
        frames = _read_frames(path)
    except Exception as error:  # PyAV and Pillow raise many kinds for broken files
        return reason(error)
    if not frames:
        return "no frames"
    width, height = frames[0].size
    return len(frames), height, width, 1 if frames[0].mode in ("1", "L", "I", "F") else 3


def decode_clip(path: str | BinaryIO, options: dict) -> np.ndarray | str:
    from PIL import Image

    try:
        frames = _read_frames(path)
    except Exception as error:  # PyAV and Pillow raise many kinds for broken files
        return reason(error)
    if not frames:
        return "no frames"
    count, channels, (height, width) = options["frames"], options["channels"], options["size"]
    chosen = np.linspace(0, len(frames) - 1, count).round().astype(int)  # evenly, repeating if too few
    out = np.zeros((channels, count, height, width), dtype=np.uint8)
    for t, index in enumerate(chosen):
        frame = frames[index].convert("L" if channels == 1 else "RGB")
        if frame.size != (width, height):
            frame = frame.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(frame, dtype=np.uint8)
        out[:, t] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


@dataclass
class VideoEncoder(FileColumn):
    column: str
    frames: int = 8
    size: tuple[int, int] = (0, 0)
    channels: int = 3
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    type: ClassVar[str] = "video"
    options: ClassVar[tuple[str, ...]] = ("frames", "size", "channels")
    tabular: ClassVar[bool] = False
    dtype: ClassVar[str] = "float"
    vocab_size: ClassVar[int | None] = None
    is_item: ClassVar = staticmethod(is_clip)
    folder_table: ClassVar = staticmethod(video_folder_table)
    kind: ClassVar[str] = "video"
    what: ClassVar[str] = "clip"
    decoder: ClassVar = staticmethod(decode_clip)

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        frames = options.get("frames")
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
            return f"frames is a whole number of at least 1; found {frames!r}"
        from dltrain.data.images import ImageEncoder

        return ImageEncoder.check_options({k: v for k, v in options.items() if k in ("size", "channels")})

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise", use_cache: bool = True) -> VideoEncoder:
        paths = path_list(series)
        frames, size, channels = options.get("frames"), options.get("size"), options.get("channels")
        if frames is None or size is None or channels is None:
            probes = map_files(probe_clip, paths, {}, "reading clips", cache="video-headers" if use_cache else None)
            check_failures([(p, r) for r, p in zip(probes, paths) if isinstance(r, str)], on_error, "clip")
            good = [r for r in probes if not isinstance(r, str)]
            if not good:
                raise DataError(f"column '{column}': none of its {len(paths)} clips can be read")
            frames = frames or min(16, min(n for n, _, _, _ in good))
            if size is None:
                sizes = Counter((h, w) for _, h, w, _ in good)
                if len(sizes) > 1:
                    (h, w), _ = sizes.most_common(1)[0]
                    raise DataError(
                        f"the clips of column '{column}' have {len(sizes)} frame sizes; give one to resize to, e.g. "
                        f"inputs: [{{column: {column}, type: video, size: [{h}, {w}]}}]"
                    )
                size = next(iter(sizes))
            if channels is None:
                counts = Counter(c for _, _, _, c in good)
                channels = 3 if len(counts) > 1 else next(iter(counts))
        return cls(column, int(frames), tuple(size), int(channels))

    def _options(self) -> dict:
        return {"frames": self.frames, "size": list(self.size), "channels": self.channels}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.channels, self.frames, *self.size)

    def describe(self) -> str:
        return f"{self.frames} frames of {self.size[0]}x{self.size[1]}, {self.channels} channel(s)"

    def decode_options(self) -> dict:
        return self._options()

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(self.channels)

    def use_statistics(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = mean, std

    def batch_transform(self, train: bool) -> Normalize:
        return Normalize(self.mean, self.std, [], dims=5)

    def to_dict(self) -> dict:
        return {"type": self.type, "column": self.column, **self._options(), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> VideoEncoder:
        return cls(data["column"], data["frames"], tuple(data["size"]), data["channels"], list(data["mean"]), list(data["std"]))

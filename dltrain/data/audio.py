"""Audio columns: wav files -> log-magnitude spectrograms (1, frequencies, frames).

Read with the standard library's `wave` (PCM, 8, 16, 24 or 32 bit), mixed down to mono,
resampled to `sample_rate` (band-limited, through the FFT), padded or cut to `duration` seconds,
then a short-time Fourier transform with a Hann window of `n_fft` samples every `hop_length`
samples, and log(1e-5 + magnitude). Decoded once, in parallel, and cached like images; normalized
with the training split's mean and std.
"""

from __future__ import annotations

import wave
from collections import Counter
from dataclasses import dataclass
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

EXTENSIONS = (".wav", ".wave")


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(EXTENSIONS)


def audio_folder_table(folder: Path) -> pd.DataFrame:
    return folder_table(folder, is_audio_file, "sound", EXTENSIONS)



def probe_audio(path: str, options: dict) -> tuple[int, float] | str:
    """(sample rate, seconds) from the file's header, or why it cannot be read."""
    try:
        with wave.open(path, "rb") as file:
            return file.getframerate(), file.getnframes() / max(1, file.getframerate())
    except (wave.Error, EOFError, OSError) as error:
        return _why(error)


def _why(error: Exception) -> str:
    text = reason(error)
    if "unknown format" in text:
        return f"{text} (not PCM: convert it to 16-bit PCM wav)"
    return text


def read_wav(path: str | BinaryIO) -> tuple[np.ndarray, int]:
    """Mono samples in [-1, 1] and the sample rate."""
    with wave.open(path, "rb") as file:
        channels, width, rate, count = file.getnchannels(), file.getsampwidth(), file.getframerate(), file.getnframes()
        raw = file.readframes(count)
    if len(raw) < count * channels * width:
        raise EOFError(f"the file ends after {len(raw) // max(1, channels * width)} of {count} frames (truncated)")
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        samples = np.where(value >= 1 << 23, value - (1 << 24), value).astype(np.float32) / (1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise wave.Error(f"{8 * width}-bit samples are not supported (8, 16, 24 or 32 bit PCM are)")
    return samples.reshape(-1, channels).mean(axis=1), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling through the FFT."""
    if rate == target or len(samples) == 0:
        return samples
    count = max(1, round(len(samples) * target / rate))
    spectrum = np.fft.rfft(samples)
    keep = min(len(spectrum), count // 2 + 1)
    resized = np.zeros(count // 2 + 1, dtype=complex)
    resized[:keep] = spectrum[:keep]
    return (np.fft.irfft(resized, count) * (count / len(samples))).astype(np.float32)


def spectrogram(samples: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """log(1e-5 + |STFT|), (frequencies, frames), the signal padded by n_fft // 2 at both ends."""
    padded = np.pad(samples, n_fft // 2)
    frames = 1 + (len(padded) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    magnitude = np.abs(np.fft.rfft(padded[index] * window, axis=1))
    return np.log(1e-5 + magnitude).T.astype(np.float32)


def shape_of(options: dict) -> tuple[int, int, int]:
    samples = round(options["sample_rate"] * options["duration"])
    frames = 1 + samples // options["hop_length"]
    return (1, options["n_fft"] // 2 + 1, frames)


def decode_audio(path: str | BinaryIO, options: dict) -> np.ndarray | str:
    try:
        samples, rate = read_wav(path)
    except (wave.Error, EOFError, OSError, ValueError) as error:
        return _why(error)
    samples = resample(samples, rate, options["sample_rate"])
    length = round(options["sample_rate"] * options["duration"])
    samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return spectrogram(samples, options["n_fft"], options["hop_length"])[None]


@dataclass
class AudioEncoder(FileColumn):
    column: str
    sample_rate: int = 16000
    duration: float = 1.0
    n_fft: int = 512
    hop_length: int = 128
    mean: float = 0.0
    std: float = 1.0
    type: ClassVar[str] = "audio"
    options: ClassVar[tuple[str, ...]] = ("sample_rate", "duration", "n_fft", "hop_length")
    tabular: ClassVar[bool] = False
    dtype: ClassVar[str] = "float"
    vocab_size: ClassVar[int | None] = None
    is_item: ClassVar = staticmethod(is_audio_file)
    folder_table: ClassVar = staticmethod(audio_folder_table)
    kind: ClassVar[str] = "audio"
    what: ClassVar[str] = "sound"
    decoder: ClassVar = staticmethod(decode_audio)
    storage: ClassVar = np.float32

    @classmethod
    def check_options(cls, options: dict) -> str | None:
        for key in ("sample_rate", "n_fft", "hop_length"):
            value = options.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                return f"{key} is a whole number of at least 1; found {value!r}"
        if options.get("n_fft") is not None and options["n_fft"] < 4:
            return f"n_fft is the window's length in samples, at least 4 (512 is usual); found {options['n_fft']!r}"
        duration = options.get("duration")
        if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0):
            return f"duration is a number of seconds above 0; found {duration!r}"
        return None

    @classmethod
    def fit(cls, column: str, series: pd.Series, options: dict, on_error: str = "raise", use_cache: bool = True) -> AudioEncoder:
        """Sample rate and duration from the training files' headers, unless given."""
        paths = path_list(series)
        rate, duration = options.get("sample_rate"), options.get("duration")
        if rate is None or duration is None:
            probes = map_files(probe_audio, paths, {}, "reading wav headers", cache="audio-headers" if use_cache else None)
            check_failures([(p, r) for r, p in zip(probes, paths) if isinstance(r, str)], on_error, "sound")
            good = [r for r in probes if not isinstance(r, str)]
            if not good:
                raise DataError(f"column '{column}': none of its {len(paths)} sound files can be read")
            if rate is None:
                rates = Counter(r for r, _ in good)
                rate = rates.most_common(1)[0][0]
                if len(rates) > 1:
                    from dltrain.console import warn

                    warn(
                        f"the sound files of column '{column}' have {len(rates)} sample rates "
                        f"({', '.join(f'{r} Hz: {n}' for r, n in rates.most_common(4))}): all are resampled to {rate} Hz "
                        "(set sample_rate to choose)"
                    )
            if duration is None:
                duration = round(float(np.percentile([d for _, d in good], 95)), 3)
        n_fft = int(options.get("n_fft") or 512)
        return cls(column, int(rate), float(duration), n_fft, int(options.get("hop_length") or n_fft // 4))

    def _options(self) -> dict:
        return {"sample_rate": self.sample_rate, "duration": self.duration, "n_fft": self.n_fft, "hop_length": self.hop_length}

    @property
    def shape(self) -> tuple[int, int, int]:
        return shape_of(self._options())

    def describe(self) -> str:
        _, frequencies, frames = self.shape
        return f"{self.sample_rate} Hz, {self.duration:g} s -> spectrogram of {frequencies} frequencies x {frames} frames"

    def decode_options(self) -> dict:
        return self._options()

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(1, scale=1.0)

    def use_statistics(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = mean[0], std[0]

    def batch_transform(self, train: bool) -> Normalize:
        return Normalize([self.mean], [self.std], [], dims=4, scale=1.0)

    def to_dict(self) -> dict:
        return {"type": self.type, "column": self.column, **self._options(), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> AudioEncoder:
        return cls(data["column"], data["sample_rate"], data["duration"], data["n_fft"], data["hop_length"], data["mean"], data["std"])

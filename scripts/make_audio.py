"""Generate the sounds data set: tones, chirps and noise bursts as 16-bit PCM wav files.

    python scripts/make_audio.py              # data/generated/sounds/<class>/<n>.wav, 200 per class

One second at 8 kHz each, in one folder per class (tone, chirp, noise), the layout `dltrain fit`
reads as an audio source: a steady tone with harmonics, a rising or falling chirp, or a burst of
noise, each at a random pitch, loudness and place, over background hiss.
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np

CLASSES = ("tone", "chirp", "noise")


def sound(kind: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(rate) / rate
    if kind == "tone":
        f = rng.uniform(200, 1500)
        clean = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 600), rng.uniform(1200, 3000)
        if rng.random() < 0.5:
            f0, f1 = f1, f0
        clean = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / 2))
    else:
        clean = rng.normal(0, 1, rate)
    start, length = rng.uniform(0, 0.4), rng.uniform(0.4, 0.6)
    envelope = ((t >= start) & (t < start + length)).astype(float)
    signal = rng.uniform(0.2, 0.6) * clean * envelope + rng.normal(0, 0.02, rate)
    return np.clip(signal, -1, 1)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((samples * 32767).astype("<i2").tobytes())


def generate(out: Path, per_class: int, rate: int = 8000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            write_wav(out / kind / f"{n:05d}.wav", sound(kind, rate, rng), rate)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "generated" / "sounds")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.per_class, args.rate, args.seed)
    print(f"{args.per_class * len(CLASSES)} sounds in {args.out}")


if __name__ == "__main__":
    main()

"""Generate the sequences data set: noisy sine, square and sawtooth waves, one series per row.

    python scripts/make_sequences.py          # data/generated/sequences.csv: 1,500 rows of 60 values

Columns: `series` (60 numbers separated by spaces), `kind` (sine, square or sawtooth). Each wave
has a random period, phase, amplitude and offset, and Gaussian noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("sine", "square", "sawtooth")


def wave(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length)
    period = rng.uniform(12, 30)
    phase = rng.uniform(0, 1)
    cycle = (t / period + phase) % 1.0
    if kind == "sine":
        clean = np.sin(2 * np.pi * cycle)
    elif kind == "square":
        clean = np.where(cycle < 0.5, 1.0, -1.0)
    else:
        clean = 2 * cycle - 1
    return rng.uniform(0.5, 2.0) * clean + rng.uniform(-1, 1) + rng.normal(0, 0.25, length)


def generate(out: Path, rows: int, length: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(rows)]
    series = [" ".join(f"{v:.3f}" for v in wave(k, length, rng)) for k in kinds]
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"series": series, "kind": kinds}).to_csv(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "generated" / "sequences.csv")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.rows, args.length, args.seed)
    print(f"{args.rows} series in {args.out}")


if __name__ == "__main__":
    main()

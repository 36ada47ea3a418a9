"""Where a training step's time goes: dltrain's loop against a hand-written one, under cProfile.

W1's table (MLP 32-128-128-4, Adam) at batch 256 and at batch 32, 3 epochs with a validation pass
each. The profiler runs only around the epochs (dltrain's `Trainer._epoch`, the hand-written
loop's function), and every function's own time is put in one of four groups by where its code
lives: the trainer's own Python (dltrain's modules, or the hand-written loop), torch's Python layer
(`Module.__call__`, the optimizer's step, autograd's wrappers), C calls (the kernels, autograd's
engine, tensor indexing) and the rest (the standard library). A trainer that costs nothing adds
nothing to its own group beyond what the hand-written loop has there. cProfile slows every Python
call alike, so the figures are larger than unprofiled time; the comparison is what counts.

    python benchmarks/step_profile.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dltrain  # noqa: E402
from benchmarks.tabular import EPOCHS, config, handwritten, make_table  # noqa: E402
from dltrain.train.trainer import Trainer, count_batches  # noqa: E402

GROUPS = ("the trainer's own Python", "torch's Python layer", "C calls (kernels, autograd, indexing)", "the rest")
PACKAGE = str(Path(dltrain.__file__).parent)
TORCH = str(Path(torch.__file__).parent)
HERE = str(Path(__file__).resolve().parent)


def group(filename: str) -> str:
    if filename.startswith(PACKAGE) or filename.startswith(HERE):
        return GROUPS[0]
    if filename.startswith(TORCH):
        return GROUPS[1]
    if filename == "~":
        return GROUPS[2]
    return GROUPS[3]


def breakdown(profile: cProfile.Profile) -> dict[str, float]:
    totals = dict.fromkeys(GROUPS, 0.0)
    for (filename, _, _), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        totals[group(filename)] += own
    return totals


def profiled_fit(cfg: dict) -> cProfile.Profile:
    profile = cProfile.Profile()
    original = Trainer._epoch

    def epoch(self):
        profile.enable()
        try:
            return original(self)
        finally:
            profile.disable()

    Trainer._epoch = epoch
    try:
        dltrain.fit(cfg, progress=False)
    finally:
        Trainer._epoch = original
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        path = folder / "w1.parquet"
        make_table(args.rows).to_parquet(path)
        for batch_size in (256, 32):
            cfg = config(path, batch_size, folder / "runs")
            data = dltrain.check(cfg).data.splits
            x, y, xv, yv = data["train"].x, data["train"].y, data["val"].x, data["val"].y
            steps = EPOCHS * count_batches(x.shape[0], batch_size)
            handwritten(x, y, xv, yv, batch_size)  # warm-up
            hand = cProfile.Profile()
            hand.runcall(handwritten, x, y, xv, yv, batch_size)
            ours = profiled_fit(cfg)
            rows = {"dltrain fit": breakdown(ours), "hand-written loop": breakdown(hand)}
            print(f"\nW1 at batch {batch_size}: {steps:,} training steps; microseconds per step under cProfile, validation included")
            print(f"| group | {' | '.join(rows)} |")
            print(f"| --- | {' | '.join('---' for _ in rows)} |")
            for name in GROUPS:
                print(f"| {name} | {' | '.join(f'{r[name] / steps * 1e6:,.1f}' for r in rows.values())} |")
            print(f"| **total** | {' | '.join(f'**{sum(r.values()) / steps * 1e6:,.1f}**' for r in rows.values())} |")
            top = pstats.Stats(ours)
            own = [
                (stat[2], f"{Path(key[0]).name}:{key[2]}")
                for key, stat in top.stats.items()  # type: ignore[attr-defined]
                if group(key[0]) == GROUPS[0]
            ]
            own.sort(reverse=True)
            print("dltrain's own functions by own time: " + ", ".join(f"{name} {t / steps * 1e6:.1f}" for t, name in own[:4]))


if __name__ == "__main__":
    main()

"""W1: 100,000 rows x 32 features, 4 classes, MLP 32-128-128-4, batch 256, 3 epochs with validation.

Trains the same model on the same rows through `dltrain.fit` (from a Parquet file, through the
whole config -> build -> train path) and through a hand-written PyTorch loop over pre-built
tensors, in one process, interleaved; prints samples/s of both and their ratio, and the ratio of
the hand-written loop against itself (the noise floor).

Samples/s = training rows x epochs / the summed seconds of the epochs (training and validation
passes), as ../shared/MEASURED.md measures the peers. Set-up (reading, encoding, building) is
reported apart.

    python benchmarks/tabular.py [--rows 100000] [--repeats 5] [--batch-size 256] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dltrain  # noqa: E402
from benchmarks.common import interleave, machine, peak_rss_mb, ratio, summary  # noqa: E402

FEATURES, CLASSES, EPOCHS = 32, 4, 3


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Four classes from a random linear teacher on Gaussian features: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES)).astype("float32")
    teacher = rng.standard_normal((FEATURES, CLASSES))
    labels = (x @ teacher + 0.5 * rng.standard_normal((rows, CLASSES))).argmax(1)
    table = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    table["label"] = np.array(["a", "b", "c", "d"])[labels]
    return table


def config(path: Path, batch_size: int, out: Path) -> dict:
    return {
        "name": "w1",
        "data": {
            "source": str(path),
            "target": "label",
            "split": {"train": 0.9, "val": 0.1},
            "batch_size": batch_size,
        },
        "model": {"layers": [{"Linear": 128}, "ReLU", {"Linear": 128}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 1e-3},
        "train": {"epochs": EPOCHS, "out_dir": str(out), "metrics": ["accuracy"]},
    }


def handwritten(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, batch_size: int) -> float:
    """The loop a PyTorch user writes: shuffled index batches, Adam, a validation pass each epoch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    seconds = 0.0
    for _ in range(EPOCHS):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        total = torch.zeros(())
        for lo in range(0, n, batch_size):
            index = order[lo : lo + batch_size]
            output = model(x[index])
            loss = loss_fn(output, y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * index.shape[0]
        model.eval()
        with torch.no_grad():
            correct, val_loss = 0, 0.0
            for lo in range(0, xv.shape[0], batch_size):
                output = model(xv[lo : lo + batch_size])
                val_loss += float(loss_fn(output, yv[lo : lo + batch_size])) * output.shape[0]
                correct += int((output.argmax(1) == yv[lo : lo + batch_size]).sum())
        _ = float(total) / n, val_loss / xv.shape[0], correct / xv.shape[0]
        seconds += time.perf_counter() - start
    return n * EPOCHS / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        table = make_table(args.rows)
        path = folder / "w1.parquet"
        table.to_parquet(path)
        cfg = config(path, args.batch_size, folder / "runs")

        # the hand-written side gets the same rows dltrain trains and validates on, already encoded
        start = time.perf_counter()
        check = dltrain.check(cfg)
        setup = time.perf_counter() - start
        x, y = check.data.splits["train"].x, check.data.splits["train"].y
        xv, yv = check.data.splits["val"].x, check.data.splits["val"].y
        rows = x.shape[0]
        print(f"W1: {rows:,} training rows, {xv.shape[0]:,} validation rows, batch {args.batch_size}, {EPOCHS} epochs")
        print(f"machine: {machine()}")
        print(f"dltrain set-up (read Parquet, encode, build model): {setup:.2f} s")

        fit_walls: list[float] = []

        def dltrain_fit() -> float:
            start = time.perf_counter()
            result = dltrain.fit(cfg, progress=False)
            fit_walls.append(time.perf_counter() - start)
            return rows * EPOCHS / sum(r["seconds"] for r in result.history)

        handwritten(x, y, xv, yv, args.batch_size)  # warm-up: the first optimizer imports torch._dynamo
        dltrain.fit(cfg, progress=False)
        results = interleave(
            {
                "dltrain.fit": dltrain_fit,
                "hand-written loop": lambda: handwritten(x, y, xv, yv, args.batch_size),
                "hand-written loop (again)": lambda: handwritten(x, y, xv, yv, args.batch_size),
            },
            args.repeats,
        )

    print()
    print(f"{'':<28} {'samples/s, median (min - max)':>32}")
    for name, values in results.items():
        print(f"{name:<28} {summary(values):>32}")
    print()
    print(f"ratio dltrain / hand-written:          {ratio(results['dltrain.fit'], results['hand-written loop'])}")
    print(f"noise floor, hand-written / itself:    {ratio(results['hand-written loop (again)'], results['hand-written loop'])}")
    print(f"whole dltrain.fit call (read, encode, build, train, checkpoints): median {sorted(fit_walls)[len(fit_walls) // 2]:.2f} s")
    print(f"peak resident memory: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()

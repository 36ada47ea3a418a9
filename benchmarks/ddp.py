"""Training samples/s with 1 and 2 processes under torchrun (gloo on the CPU, nccl on GPUs).

W1 (100,000 rows x 32 features, MLP 32-128-128-4) at a global batch of 256, 3 epochs, through
`torchrun --nproc-per-node N -m dltrain fit`, each rank with cores / N intra-op threads. Samples/s
is training rows x epochs over the summed epoch seconds that rank 0 writes to metrics.csv.

On a 2-core machine, two processes share the same two cores that one process already uses with
two threads, and they add a gradient all-reduce each step: do not expect a speed-up here. The
figures show what DDP costs; on several GPUs or machines it is how dltrain scales.

    python benchmarks/ddp.py [--rows 100000] [--repeats 3] [--nproc 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tabular import make_table  # noqa: E402

CONFIG = """\
name: ddp
data: {{source: {source}, target: label, split: {{train: 0.9, val: 0.1}}, batch_size: 256}}
model: {{layers: [{{Linear: 128}}, ReLU, {{Linear: 128}}, ReLU, {{Linear: auto}}]}}
loss: CrossEntropyLoss
train: {{epochs: 3, metrics: [accuracy], threads: {threads}}}
"""


def run(folder: Path, nproc: int, rows: int) -> tuple[float, float]:
    threads = max(1, (os.cpu_count() or 1) // nproc)
    config = folder / f"ddp{nproc}.yaml"
    config.write_text(CONFIG.format(source=folder / "w1.parquet", threads=threads))
    out = folder / f"run{nproc}-{len(list(folder.glob('run*')))}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "dltrain", "fit", str(config), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    metrics = pd.read_csv(out / "metrics.csv")
    train_rows = int(rows * 0.9)
    return train_rows * len(metrics) / metrics["seconds"].sum(), float(metrics["val_accuracy"].iloc[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_table(args.rows).to_parquet(folder / "w1.parquet")
        results: dict[int, list[float]] = {n: [] for n in args.nproc}
        accuracy: dict[int, float] = {}
        for round_ in range(args.repeats):  # interleaved
            for n in args.nproc:
                speed, accuracy[n] = run(folder, n, args.rows)
                results[n].append(speed)
                print(f"  round {round_ + 1}/{args.repeats}  {n} process(es)  {speed:,.0f} samples/s", flush=True)
    print(f"\nW1, {args.rows:,} rows, global batch 256, 3 epochs, {os.cpu_count()} cores")
    print(f"{'processes':>10} {'samples/s, median (min - max)':>34} {'val accuracy':>13}")
    for n, values in results.items():
        print(f"{n:>10} {statistics.median(values):>14,.0f} ({min(values):,.0f} - {max(values):,.0f}) {accuracy[n]:>13.3f}")
    base = statistics.median(results[args.nproc[0]])
    for n in args.nproc[1:]:
        print(f"ratio {n} / {args.nproc[0]} processes: {statistics.median(results[n]) / base:.2f}")


if __name__ == "__main__":
    main()

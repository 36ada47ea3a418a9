"""Peak memory and throughput of in-memory and streaming (data.in_memory: false) training.

A 32-feature, 4-class table is written as Parquet at two sizes (the larger several times the
smaller); each (size, mode) trains one epoch of an MLP 32-128-128-4 in a fresh process, which
reports its peak resident memory and its training samples/s. In memory, memory grows with the
data; streamed, it stays flat.

    python benchmarks/streaming.py [--rows 200000 800000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def child(path: str, in_memory: bool) -> None:
    import dltrain
    from benchmarks.common import peak_rss_mb

    config = {
        "data": {"source": path, "target": "label", "split": {"train": 0.9, "val": 0.1}, "batch_size": 256, "in_memory": in_memory},
        "model": {"layers": [{"Linear": 128}, "ReLU", {"Linear": 128}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "train": {"epochs": 1, "out_dir": str(Path(path).parent / "runs"), "metrics": ["accuracy"]},
    }
    result = dltrain.fit(config, progress=False)
    peak = peak_rss_mb()  # before anything else is read
    row = result.history[0]
    rows = int(json.loads(Path(path).with_suffix(".rows").read_text()) * 0.9)  # the train split, to a row
    print(json.dumps({"samples_per_s": rows / row["seconds"], "peak_mb": peak, "val_accuracy": row["val_accuracy"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 800_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "memory")
        return
    from benchmarks.tabular import make_table

    print(f"{'rows':>10} {'file MB':>8} {'mode':>10} {'peak MB':>9} {'samples/s':>11} {'val acc':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"w{rows}.parquet"
            make_table(rows).to_parquet(path, row_group_size=50_000)  # streaming reads a row group at a time
            path.with_suffix(".rows").write_text(str(rows))
            size = path.stat().st_size / 2**20
            for mode in ("memory", "stream"):
                out = subprocess.run([sys.executable, __file__, "--child", str(path), mode], capture_output=True, text=True, check=True)
                measured = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{rows:>10,} {size:>8.1f} {mode:>10} {measured['peak_mb']:>9,.0f} {measured['samples_per_s']:>11,.0f} {measured['val_accuracy']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()

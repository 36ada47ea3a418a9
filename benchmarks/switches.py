"""The speed switches measured both ways: torch.compile, the intra-op thread count, channels_last.

W1, W2 and W3 of the suite (benchmarks/suite.py), each trial a fresh process, interleaved, medians
of `--repeats` rounds. `dltrain fit` with its defaults against `train.compile: true` and against
`train.threads: 1`; for W3 also the hand-written loop with the model and batches in the
channels-last layout against the default layout (dltrain uses channels-last on CUDA only).
Samples/s counts the epochs; set-up s is the rest of the run (reading, encoding, building, and
compiling where asked).

    python benchmarks/switches.py [--repeats 3] [--only W1 W2 W3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import prepare, trial  # noqa: E402

VARIANTS = {
    "dltrain fit, defaults": ("dltrain", {}),
    "dltrain fit, train.compile: true": ("dltrain", {"BENCH_TRAIN": json.dumps({"compile": True})}),
    "dltrain fit, train.threads: 1": ("dltrain", {"BENCH_TRAIN": json.dumps({"threads": 1})}),
    "hand-written loop": ("hand", {}),
    "hand-written loop, channels_last": ("hand", {"BENCH_CHANNELS_LAST": "1"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=["W1", "W2", "W3"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("preparing the data ...", flush=True)
        prepare(folder, args.images, args.rows)
        lines = ["| workload | trainer | samples/s, median (min - max) | set-up s |", "| --- | --- | --- | --- |"]
        for workload in args.only:
            variants = {k: v for k, v in VARIANTS.items() if workload == "W3" or "channels_last" not in k}
            results: dict[str, list[dict]] = {name: [] for name in variants}
            for round_ in range(args.repeats):
                for name, (runner, env) in variants.items():
                    result = trial(runner, workload, folder, env)
                    results[name].append(result)
                    print(f"  {workload} round {round_ + 1}/{args.repeats}  {name:<36} {result['samples_per_s']:>10,.0f} samples/s", flush=True)
            for name, runs in results.items():
                rates = [r["samples_per_s"] for r in runs]
                setup = statistics.median(r["setup_s"] for r in runs)
                lines.append(f"| {workload} | {name} | {statistics.median(rates):,.0f} ({min(rates):,.0f} - {max(rates):,.0f}) | {setup:.2f} |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

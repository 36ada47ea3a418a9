"""The whole process, from the shell to a saved run: `dltrain fit`, `predict` and `evaluate` against
the hand-written scripts of benchmarks/hand.py doing the same work, each a fresh process, alternated.

    python -m benchmarks.whole [--repeats 3] [--only W1 W3 W3cold small predict evaluate] [--no-readme]
    make bench  (after the suite)

W1: a 100,000 x 32 CSV, 4 classes, MLP 32-128-128-4, batch 256, 3 epochs. W3: 20,000 28x28 PNG
files in class folders, the small CNN, batch 128, 2 epochs; warm: dltrain's decode cache filled by
an earlier run (the hand-written script decodes every time, as such scripts do); cold: an empty
cache. small: a 178-row table (wine, 13 measurements, 3 classes), 40 epochs, batch 16.
predict: 100,000 new rows to a CSV, and 2,000 new images; evaluate: 100,000 labelled rows.
Every fit reads, encodes, splits, trains, validates and checkpoints each epoch. Seconds are the
process's wall time as the shell sees it (interpreter start and exit included); the ratio is
hand-written / dltrain per round, its median and range over the rounds. dltrain draws curves.png
in a process of its own after `fit` returns: the next trial waits for it, untimed, so that it
never runs beside another trial (the table says how long after the prompt it was there).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.images import layers as cnn_layers  # noqa: E402
from benchmarks.images import make_images  # noqa: E402
from benchmarks.tabular import make_table  # noqa: E402

HAND = [sys.executable, str(ROOT / "benchmarks" / "hand.py")]
_SCRIPT = Path(sys.executable).parent / "dltrain"
DLTRAIN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dltrain"]

LABELS = {
    "W1": "W1: fit, 100,000 x 32 CSV, 3 epochs",
    "W3": "W3: fit, 20,000 PNG files, 2 epochs, decode cache warm",
    "W3cold": "W3: fit, 20,000 PNG files, 2 epochs, first run (decodes)",
    "small": "small table: fit, 178 rows, 40 epochs",
    "predict-table": "predict: 100,000 rows to a CSV",
    "predict-images": "predict: 2,000 PNG files to a CSV",
    "evaluate": "evaluate: 100,000 labelled rows",
}
GROUPS = {"predict": ["predict-table", "predict-images"]}


def config(name: str, source: str, layers: list, batch: int, epochs: int, out: Path, target: str | None, split: dict, lr: float) -> dict:
    data = {"source": source, "split": split, "batch_size": batch}
    if target:
        data["target"] = target
    return {
        "name": name,
        "seed": 0,
        "data": data,
        "model": {"layers": layers},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": lr},
        "train": {"epochs": epochs, "out_dir": str(out), "metrics": ["accuracy"]},
    }


def prepare(folder: Path) -> dict:
    """The data files, the configs, and for each workload the two commands (a function of the round)."""
    make_table(100_000).to_csv(folder / "table.csv", index=False)
    unseen = make_table(100_000, seed=1)
    unseen.drop(columns="label").to_csv(folder / "new_rows.csv", index=False)
    unseen.to_csv(folder / "labelled.csv", index=False)
    with sqlite3.connect(ROOT / "data" / "wine.db") as db:
        import pandas as pd

        pd.read_sql("select * from wine", db).to_csv(folder / "wine.csv", index=False)
    make_images(folder / "images", 20_000)
    make_images(folder / "new_images", 2_000, seed=1)
    mlp = [{"Linear": 128}, "ReLU", {"Linear": 128}, "ReLU", {"Linear": "auto"}]
    configs = {
        "W1": config("w1", str(folder / "table.csv"), mlp, 256, 3, folder / "runs", "label", {"train": 0.9, "val": 0.1}, 1e-3),
        "W3": config("w3", str(folder / "images"), cnn_layers(), 128, 2, folder / "runs", None, {"train": 0.9, "val": 0.1}, 1e-3),
        "small": config("small", str(folder / "wine.csv"), [{"Linear": 32}, "ReLU", {"Linear": "auto"}], 16, 40, folder / "runs", "cultivar",
                        {"train": 0.7, "val": 0.15, "test": 0.15}, 5e-3),
    }  # fmt: skip
    for name, body in configs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    hand = {  # (what comes before the output folder, the options after it)
        "W1": (["fit-table", str(folder / "table.csv"), "label"], []),
        "W3": (["fit-images", str(folder / "images")], ["--batch", "128", "--epochs", "2"]),
        "small": (["fit-table", str(folder / "wine.csv"), "cultivar"],
                  ["--batch", "16", "--epochs", "40", "--split", "0.7", "0.15", "0.15", "--hidden", "32", "--lr", "0.005"]),
    }  # fmt: skip
    return {"configs": configs, "hand": hand}


def run(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def newest_run(folder: Path, name: str) -> Path:
    runs = [p for p in (folder / "runs").iterdir() if p.name == name or p.name.startswith(name + "-")]
    return max(runs, key=lambda p: p.stat().st_mtime)


def wait_for_curves(run_dir: Path, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not (run_dir / "curves.png").is_file():
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{run_dir}: no curves.png {timeout:.0f} s after fit ended")
        time.sleep(0.02)
    return time.perf_counter() - start


def trials(workload: str, folder: Path, setup: dict, round_: int) -> dict:
    """The two commands of a workload in this round, as functions that return their seconds."""
    out = folder / "hand" / f"{workload}-{round_}"
    if workload in ("W1", "W3", "W3cold", "small"):
        key = "W3" if workload == "W3cold" else workload
        env = {"DLTRAIN_CACHE": str(folder / (f"cold-{round_}" if workload == "W3cold" else "cache"))}
        curves: list[float] = []

        def dltrain() -> float:
            seconds = run([*DLTRAIN, "fit", str(folder / f"{key}.yaml")], env)
            curves.append(wait_for_curves(newest_run(folder, setup["configs"][key]["name"])))
            return seconds

        def hand() -> float:
            shutil.rmtree(out, ignore_errors=True)
            before, options = setup["hand"][key]
            return run([*HAND, *before, str(out), *options])

        return {"dltrain": dltrain, "hand": hand, "curves": curves}
    trained = newest_run(folder, "w3" if workload == "predict-images" else "w1")
    hand_out = folder / "hand" / ("W3-0" if workload == "predict-images" else "W1-0")
    if workload == "predict-table":
        data, what = folder / "new_rows.csv", "predict-table"
    elif workload == "predict-images":
        data, what = folder / "new_images", "predict-images"
    else:
        data, what = folder / "labelled.csv", "evaluate-table"
    result = folder / f"{workload}-{round_}"

    def dltrain() -> float:
        if workload == "evaluate":
            return run([*DLTRAIN, "evaluate", str(trained), "--data", str(data)])
        target = result.with_suffix(".dltrain.csv")
        target.unlink(missing_ok=True)
        return run([*DLTRAIN, "predict", str(trained), str(data), "--output", str(target)])

    def hand() -> float:
        return run([*HAND, what, str(hand_out), str(data), str(result.with_suffix(".hand.out"))])

    return {"dltrain": dltrain, "hand": hand, "curves": []}


def measure(workloads: list[str], repeats: int, folder: Path, setup: dict) -> dict:
    results = {}
    for workload in workloads:
        # warm-up, untimed: the file caches, matplotlib's font cache, dltrain's decode cache (W3 warm)
        warm = trials(workload, folder, setup, -1)
        warm["hand"](), warm["dltrain"]()
        times: dict = {"dltrain": [], "hand": [], "curves": []}
        for round_ in range(repeats):
            chosen = trials(workload, folder, setup, round_)
            order = ("hand", "dltrain") if round_ % 2 == 0 else ("dltrain", "hand")
            for who in order:
                times[who].append(chosen[who]())
            times["curves"] += chosen["curves"]
            print(f"  {workload:<15} round {round_ + 1}/{repeats}  hand {times['hand'][-1]:6.2f} s   dltrain {times['dltrain'][-1]:6.2f} s", flush=True)
        results[workload] = times
    return results


def table(results: dict) -> list[str]:
    lines = [
        "| work (whole process, a fresh one each time) | hand-written script s | `dltrain` s | ratio hand / dltrain, median (min - max) | curves.png there after the prompt, s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for workload, times in results.items():
        ratios = [h / d for h, d in zip(times["hand"], times["dltrain"])]
        curves = f"{statistics.median(times['curves']):.1f}" if times["curves"] else "-"
        lines.append(
            f"| {LABELS[workload]} | {statistics.median(times['hand']):.2f} | {statistics.median(times['dltrain']):.2f} | "
            f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f} - {max(ratios):.2f}) | {curves} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=["W1", "W3", "W3cold", "small", "predict", "evaluate"])
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="do not write the results into README.md")
    args = parser.parse_args()
    workloads = [w for name in args.only for w in GROUPS.get(name, [name])]
    needs = {"predict-table": "W1", "evaluate": "W1", "predict-images": "W3"}
    for workload, fit in needs.items():  # predict and evaluate use the run (and the hand-written checkpoint) of a fit
        if workload in workloads and fit not in workloads:
            workloads.insert(0, fit)
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("preparing the data ...", flush=True)
        setup = prepare(folder)
        results = measure(workloads, args.repeats, folder, setup)
        import torch

        lines = [
            f"Measured {datetime.date.today().isoformat()}: {os.cpu_count()} cores, torch {torch.__version__}, "
            f"medians of {args.repeats} alternated rounds (python -m benchmarks.whole).",
            "",
            *table(results),
        ]
        if not args.no_startup:
            from benchmarks.suite import startup

            print("start-up ...", flush=True)
            lines += ["", *startup(folder)]
    lines += ["", f"This benchmark took {(time.perf_counter() - begun) / 60:.1f} minutes."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "benchmarks" / "RESULTS-whole.md").write_text(text)
    (ROOT / "benchmarks" / "RESULTS-whole.json").write_text(json.dumps(results, indent=1))
    if not args.no_readme:
        from benchmarks.common import into_readme

        into_readme(ROOT / "README.md", "whole", text)


if __name__ == "__main__":
    main()

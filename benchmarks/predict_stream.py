"""`dltrain predict` on 2 million rows: rows per second and peak memory of the whole command, from
the shell to the saved file, for a CSV and a Parquet input; and, for comparison, the same CSV
predicted as one chunk (the whole table in memory at once, as predict did before it streamed).

    python -m benchmarks.predict_stream [--rows 2000000] [--no-whole] [--dry]

The model is W1's (32 numeric inputs, Linear 128, 128, four classes: benchmarks/RESULTS.md), fitted
for one epoch on 20,000 generated rows; the rows to predict are generated alike (numbers with four
decimals). Each command is timed once, as a user would run it (`python -m dltrain predict RUN FILE
-o predictions.csv`); the peak is the command's ru_maxrss, read by a small launcher process (a
child's ru_maxrss counts the pages it shared with its parent before exec, and this process holds
the generated table). Writes benchmarks/RESULTS-predict.md and the README's block (not with --dry).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import into_readme, machine

ROOT = Path(__file__).resolve().parent.parent
CHUNKED = "import sys, dltrain.inference as i; i.CHUNK_ROWS = int(sys.argv[1]); sys.argv[1:2] = []; from dltrain.cli import main; main()"
LAUNCHER = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
FEATURES = 32


def _table(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    x = rng.normal(size=(rows, FEATURES)).round(4)
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(FEATURES)])
    table["y"] = np.array(["a", "b", "c", "d"])[np.digitize(x[:, :4].sum(1), [-1.35, 0, 1.35])]  # four classes, as W1
    return table


def _prepare(work: Path, rows: int) -> None:
    """The fitted run, and the rows to predict as rows.csv and rows.parquet (pandas' defaults)."""
    import pyarrow as pa
    import pyarrow.csv

    rng = np.random.default_rng(0)
    _table(rng, 20_000).to_csv(work / "train.csv", index=False)
    (work / "table.yaml").write_text(
        "data: {source: train.csv, target: y, batch_size: 256}\nmodel: {layers: [{Linear: 128}, ReLU, {Linear: 128}, ReLU, {Linear: auto}]}\n"
        "loss: CrossEntropyLoss\ntrain: {epochs: 1}\n"
    )
    subprocess.run([sys.executable, "-m", "dltrain", "fit", "table.yaml", "--out", "run"], cwd=work, check=True, capture_output=True, env=_env())
    table = _table(rng, rows).drop(columns="y")
    pyarrow.csv.write_csv(pa.Table.from_pandas(table, preserve_index=False), work / "rows.csv")
    table.to_parquet(work / "rows.parquet", index=False)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _predict(work: Path, input: str, chunk_rows: int | None) -> tuple[float, float]:
    """Seconds and peak MB of one `python -m dltrain predict` (with the chunk size set, if given)."""
    out = work / "predictions.csv"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "dltrain"] if chunk_rows is None else [sys.executable, "-c", CHUNKED, str(chunk_rows)]
    command += ["predict", "run", input, "-o", str(out)]
    start = time.perf_counter()
    launched = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *command], cwd=work, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if launched.returncode != 0:
        raise RuntimeError(f"{command}: {launched.stderr}")
    return seconds, int(launched.stdout.split()[-1]) / 1024


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--no-whole", action="store_true", help="skip the CSV predicted as one chunk")
    parser.add_argument("--dry", action="store_true", help="print the table; write neither RESULTS-predict.md nor the README")
    args = parser.parse_args(argv)
    from dltrain.inference import CHUNK_ROWS
    work = Path(tempfile.mkdtemp(prefix="dltrain-predict-bench-"))
    try:
        _prepare(work, args.rows)
        sizes = {name: (work / name).stat().st_size / 2**20 for name in ("rows.csv", "rows.parquet")}
        import pyarrow.parquet as pq

        group = pq.ParquetFile(work / "rows.parquet").metadata.row_group(0).num_rows
        trials = {"CSV, streamed": ("rows.csv", None), "Parquet, streamed": ("rows.parquet", None)}
        if not args.no_whole:
            trials["CSV, whole table at once"] = ("rows.csv", 10**9)
        lines = ["| input | seconds | rows/s | peak memory |", "| --- | --- | --- | --- |"]
        for label, (input, chunk_rows) in trials.items():
            seconds, peak = _predict(work, input, chunk_rows)
            lines.append(f"| {label} ({sizes[input]:,.0f} MB) | {seconds:.1f} | {args.rows / seconds:,.0f} | {peak:,.0f} MB |")
            print(lines[-1], flush=True)
        predicted = len(pd.read_csv(work / "predictions.csv", usecols=["prediction"]))
        assert predicted == args.rows, f"{predicted} predictions of {args.rows} rows"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (
        f"`dltrain predict RUN rows -o predictions.csv` on {args.rows:,} rows of 32 numbers (W1's MLP, four classes), "
        f"timed from the shell to the saved file, startup included; the peak is the command's resident memory. "
        f"Streamed: {CHUNK_ROWS:,} rows at a time; a Parquet file is read a row group at a time at most, and pandas "
        f"wrote this one in row groups of {group:,} rows.\n\n" + "\n".join(lines) + f"\n\nMachine: {machine()}. `python -m benchmarks.predict_stream`.\n"
    )
    print(text)
    if not args.dry:
        (ROOT / "benchmarks" / "RESULTS-predict.md").write_text("# dltrain predict, streamed\n\n" + text)
        into_readme(ROOT / "README.md", "predict", text)


if __name__ == "__main__":
    main(sys.argv[1:])

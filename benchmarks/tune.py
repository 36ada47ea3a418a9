"""What tuning costs beyond its trials: `dltrain tune` against the same trials run as separate
`dltrain fit` commands, one after another, each for the epochs its trial ran (a pruned trial's
fewer). Both from the shell, whole processes, timed with the clock on the wall.

    python -m benchmarks.tune [CONFIG ...]      (default: configs/penguins.yaml configs/diabetes.yaml)

Prints a table and writes benchmarks/RESULTS-tune.md (and, for the shipped configs, the README's table
between its tune markers). The study is made in a temporary folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(config: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dltrain-tune-bench-"))
    try:
        shutil.copytree(ROOT / "configs", work / "configs")
        shutil.copytree(ROOT / "data", work / "data", ignore=shutil.ignore_patterns("generated"))
        dltrain = [sys.executable, "-m", "dltrain"]
        tuned = _timed([*dltrain, "tune", str(Path("configs") / config.name)], work)
        name = json.loads(next((work / "runs").glob("*-tune/tune.json")).read_text())["name"]
        trials = pd.read_csv(work / "runs" / f"{name}-tune" / "trials.csv")
        separate, epochs = 0.0, 0
        for row in trials.itertuples():
            run = Path(row.run)
            ran = int(row.epochs)
            epochs += ran
            separate += _timed([*dltrain, "fit", str(run / "config.yaml"), f"train.epochs={ran}", "--out", str(work / "again" / run.name)], work)
        states = trials["state"].value_counts().to_dict()
        return {"config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config), "trials": len(trials), "states": states, "epochs": epochs, "tune_s": tuned, "fits_s": separate}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> None:
    configs = [Path(a).resolve() for a in argv] or [ROOT / "configs/penguins.yaml", ROOT / "configs/diabetes.yaml"]
    rows = []
    for config in configs:
        print(f"{config.name}: dltrain tune, then each trial as a dltrain fit ...", flush=True)
        rows.append(measure(config))
    lines = [
        "| config | trials (complete / pruned) | epochs in all | `dltrain tune` s | the same trials as `dltrain fit` commands s | ratio fits / tune |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        states = f"{r['trials']} ({r['states'].get('complete', 0)} / {r['states'].get('pruned', 0)})"
        lines.append(f"| `{r['config']}` | {states} | {r['epochs']} | {r['tune_s']:.1f} | {r['fits_s']:.1f} | **{r['fits_s'] / r['tune_s']:.2f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "RESULTS-tune.md").write_text(f"Measured {time.strftime('%Y-%m-%d')} (python -m benchmarks.tune)\n\n" + text)
    if not argv:  # the shipped configs: their table goes into the README
        from benchmarks.common import into_readme

        into_readme(ROOT / "README.md", "tune", f"Measured {time.strftime('%Y-%m-%d')}, 2 cores (python -m benchmarks.tune).\n\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])

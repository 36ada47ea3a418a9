"""`dltrain runs`: the runs under a folder, their best results and test metrics, best first."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class RunRow:
    path: Path
    name: str
    date: str
    epochs: int
    monitor: str
    best: float
    best_epoch: int | None
    test: dict  # evaluate_test.json's metrics, if evaluated
    trials: int | None = None  # a tune folder: the trials of its study (best_epoch is then the best trial)


def list_runs(folder: str | Path = "runs") -> list[RunRow]:
    from dltrain.train.metrics import higher_is_better

    folder = Path(folder)
    if not folder.is_dir() and folder != Path("runs"):  # no runs/ yet is simply no runs
        from dltrain.errors import UsageError

        raise UsageError(f"{folder}: no such folder; give the folder that holds the runs (train.out_dir, runs/ by default)")
    rows = []
    for metrics in sorted(folder.glob("*/metrics.csv")) if folder.is_dir() else []:
        run = metrics.parent
        try:
            frame = pd.read_csv(metrics)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError):
            continue
        monitor = _monitor(run)
        values = frame[monitor] if monitor in frame else pd.Series(dtype=float)
        values = values[values.apply(lambda v: isinstance(v, float) and math.isfinite(v))]
        best_index = (values.idxmax() if higher_is_better(monitor) else values.idxmin()) if len(values) else None
        test = {}
        evaluated = run / "evaluate_test.json"
        if evaluated.is_file():
            test = json.loads(evaluated.read_text()).get("metrics", {})
        rows.append(
            RunRow(
                run,
                run.name,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(metrics.stat().st_mtime)),
                len(frame),
                monitor,
                float(values[best_index]) if best_index is not None else math.nan,
                int(frame["epoch"][best_index]) if best_index is not None else None,
                test,
            )
        )

    for summary in sorted(folder.glob("*/tune.json")) if folder.is_dir() else []:
        try:
            study = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        best = study.get("best") or {}
        test = {}
        if best.get("run") and (Path(best["run"]) / "evaluate_test.json").is_file():
            test = json.loads((Path(best["run"]) / "evaluate_test.json").read_text()).get("metrics", {})
        rows.append(
            RunRow(
                summary.parent,
                summary.parent.name,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.stat().st_mtime)),
                int(best.get("epochs") or 0),
                study.get("metric", "val_loss"),
                float(best["value"]) if best.get("value") is not None else math.nan,
                best.get("number"),
                test,
                int(study.get("ended", 0)),
            )
        )

    def order(row: RunRow):
        sign = -1 if higher_is_better(row.monitor) else 1
        return (row.monitor, math.isnan(row.best), sign * row.best if not math.isnan(row.best) else 0)

    return sorted(rows, key=order)


def _monitor(run: Path) -> str:
    config = run / "config.yaml"
    if config.is_file():
        import yaml

        try:
            return ((yaml.safe_load(config.read_text()) or {}).get("train") or {}).get("monitor", "val_loss")
        except yaml.YAMLError:
            pass
    return "val_loss"

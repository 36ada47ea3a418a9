"""`dltrain runs`: the runs under a folder, their best results and test metrics, best first.

Also the readers of a run's files that every tool of many runs shares (`runs`, `plot`, `report`):
a file that is not what dltrain writes raises `DamagedRun`, and a tool over many runs skips that
run with a one-line warning instead of failing for all of them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dltrain.errors import CheckpointError, first_line


class DamagedRun(CheckpointError):
    """A run folder whose files are not what dltrain writes (truncated, edited, of another tool)."""


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
    data: str = ""  # the data it was trained on (config.yaml's data.source), "" when not known
    config: str = ""  # the config's name (config.yaml's name)

    @property
    def group(self) -> str:
        """What `dltrain runs` groups it under: its data, else its config's name."""
        return f"data: {self.data}" if self.data else f"config: {self.config or self.name}"


def list_runs(folder: str | Path = "runs", name: str | None = None, data: str | None = None) -> list[RunRow]:
    """The runs (and tune studies) under `folder`, grouped by their data and best first in each group.

    `name`: only runs whose folder or config name is it (a glob: iris*); `data`: only runs whose data
    source holds this text."""
    from fnmatch import fnmatchcase

    from dltrain.train.metrics import higher_is_better

    folder = Path(folder)
    if not folder.is_dir() and folder != Path("runs"):  # no runs/ yet is simply no runs
        from dltrain.errors import UsageError

        raise UsageError(f"{folder}: no such folder; give the folder that holds the runs (train.out_dir, runs/ by default)")
    rows = []
    for metrics in sorted(folder.glob("*/metrics.csv")) if folder.is_dir() else []:
        row = skipping_damaged(metrics.parent, lambda run=metrics.parent: _run_row(run, higher_is_better))
        if row is not None:
            rows.append(row)
    for summary in sorted(folder.glob("*/tune.json")) if folder.is_dir() else []:
        row = skipping_damaged(summary.parent, lambda summary=summary: _study_row(summary))
        if row is not None:
            rows.append(row)

    if name is not None:
        rows = [r for r in rows if fnmatchcase(r.name, name) or fnmatchcase(r.config, name)]
    if data is not None:
        rows = [r for r in rows if data.lower() in r.data.lower()]

    def order(row: RunRow):
        sign = -1 if higher_is_better(row.monitor) else 1
        return (row.group, row.monitor, math.isnan(row.best), sign * row.best if not math.isnan(row.best) else 0)

    return sorted(rows, key=order)


def group_runs(rows: list[RunRow]) -> list[tuple[str, list[RunRow]]]:
    """`rows` (as list_runs orders them) as (heading, rows) per data source, in that order."""
    groups: dict[str, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return list(groups.items())


def read_origin(config: Path) -> tuple[str, str]:
    """(data source, config name) of a saved config, shortened for a listing; ("", "") for what
    cannot be read (read_monitor says what is wrong with it)."""
    import yaml

    try:
        value = yaml.safe_load(config.read_text()) if config.is_file() else None
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return "", ""
    if not isinstance(value, dict):
        return "", ""
    section = value.get("data") if isinstance(value.get("data"), dict) else {}
    source = section.get("source")
    if source is None and isinstance(section.get("split"), dict):  # split: {train: FILE, ...}
        source = section["split"].get("train")
    name = value.get("name")
    return _shown_source(source), name if isinstance(name, str) else ""


def _shown_source(source) -> str:
    if isinstance(source, dict):
        parts = [str(source[k]) for k in ("path", "url", "query", "config", "split") if source.get(k)]
        return " ".join(parts)
    if not isinstance(source, str):
        return ""
    try:
        path = Path(source)
        return str(path.relative_to(Path.cwd())) if path.is_absolute() and path.is_relative_to(Path.cwd()) else source
    except (OSError, ValueError):
        return source


def best_index(frame: pd.DataFrame, monitor: str, higher: bool):
    """The row of metrics.csv that best.pt holds, by the trainer's rule: the monitor's best value
    (the largest when `higher`), and among epochs that tie it (a saturated val_accuracy), the lowest
    val_loss. None: no finite value."""
    values = frame[monitor] if monitor in frame else pd.Series(dtype=float)
    values = values[values.apply(lambda v: isinstance(v, float) and math.isfinite(v))]
    if not len(values):
        return None
    best = values.max() if higher else values.min()
    tied = values.index[values == best]
    if len(tied) > 1 and not monitor.endswith("loss") and "val_loss" in frame:
        losses = frame.loc[tied, "val_loss"]
        losses = losses[losses.apply(lambda v: isinstance(v, float) and math.isfinite(v))]
        if len(losses):
            return losses.idxmin()
    return tied[0]


def _run_row(run: Path, higher_is_better) -> RunRow:
    frame = read_history(run)
    monitor = read_monitor(run)
    values = frame[monitor] if monitor in frame else pd.Series(dtype=float)
    best_index_ = best_index(frame, monitor, higher_is_better(monitor))
    data, config = read_origin(run / "config.yaml")
    return RunRow(
        run,
        run.name,
        time.strftime("%Y-%m-%d %H:%M", time.localtime((run / "metrics.csv").stat().st_mtime)),
        len(frame),
        monitor,
        float(values[best_index_]) if best_index_ is not None else math.nan,
        int(frame["epoch"][best_index_]) if best_index_ is not None else None,
        read_evaluation(run, "test"),
        data=data,
        config=config,
    )


def _study_row(summary: Path) -> RunRow:
    try:
        study = json.loads(summary.read_text())
    except (OSError, ValueError) as error:
        raise DamagedRun(f"{summary}: not the JSON that dltrain tune writes ({first_line(error)})") from None
    if not isinstance(study, dict) or not isinstance(study.get("best") or {}, dict):
        raise DamagedRun(f"{summary}: not the summary that dltrain tune writes (a mapping with metric and best)")
    best = study.get("best") or {}
    test = read_evaluation(Path(best["run"]), "test") if best.get("run") else {}
    saved = Path(best["run"]) / "config.yaml" if best.get("run") else summary.parent / "best.yaml"
    data, config = read_origin(saved if saved.is_file() else summary.parent / "best.yaml")
    return RunRow(
        summary.parent,
        summary.parent.name,
        time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.stat().st_mtime)),
        int(best.get("epochs") or 0),
        str(study.get("metric", "val_loss")),
        float(best["value"]) if best.get("value") is not None else math.nan,
        best.get("number"),
        test,
        int(study.get("ended", 0)),
        data=data,
        config=config,
    )


def skipping_damaged(run: Path, read, skipped: str = "skipped"):
    """`read()`, or None with a one-line warning naming `run` when its files are damaged
    (`skipped`: what the warning says is left out)."""
    try:
        return read()
    except DamagedRun as error:
        reason = str(error)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:  # what no check above foresaw
        reason = f"{type(error).__name__}: {first_line(error)}"
    from dltrain.console import warn

    warn(f"{skipped} {run}: {reason}")
    return None


# ----- a run's files, read


def read_history(run: str | Path) -> pd.DataFrame:
    """metrics.csv, its values as numbers (nan where not one); DamagedRun when it is not dltrain's."""
    metrics = Path(run) / "metrics.csv"
    if not metrics.is_file():
        raise DamagedRun(f"{run}: no metrics.csv here; is it a run directory with at least one epoch?")
    try:
        frame = pd.read_csv(metrics)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        frame = pd.DataFrame()
    if "epoch" not in frame.columns or "train_loss" not in frame.columns or frame.empty:
        raise DamagedRun(f"{metrics}: not a metrics.csv that dltrain wrote (it needs the columns epoch and train_loss, one row per epoch)")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    if frame["epoch"].isna().any():
        raise DamagedRun(f"{metrics}: not a metrics.csv that dltrain wrote (its epoch column holds something that is not a number)")
    return frame


def read_monitor(run: str | Path) -> str:
    """train.monitor of the run's config.yaml (val_loss when not set); DamagedRun when the file is not a config."""
    config = Path(run) / "config.yaml"
    if not config.is_file():
        return "val_loss"
    import yaml

    try:
        value = yaml.safe_load(config.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        raise DamagedRun(f"{config}: not readable YAML ({first_line(error)})") from None
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise DamagedRun(f"{config}: not a mapping of config keys, as the config.yaml that dltrain fit saves is")
    train = value.get("train")
    train = {} if train is None else train
    if not isinstance(train, dict):
        raise DamagedRun(f"{config}: train is {train!r}, not a mapping of train keys (epochs, monitor, ...)")
    monitor = train.get("monitor", "val_loss")
    if not isinstance(monitor, str):
        raise DamagedRun(f"{config}: train.monitor is {monitor!r}, not the name of a metric (val_loss, val_accuracy, ...)")
    return monitor


def read_evaluation(run: str | Path, split: str = "test") -> dict:
    """The metrics of evaluate_<split>.json ({} when not evaluated), with "data_changed": True where
    they were computed on changed data; DamagedRun when the file is not evaluate's."""
    path = Path(run) / f"evaluate_{split}.json"
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedRun(f"{path}: not the JSON that dltrain evaluate writes ({first_line(error)}); run dltrain evaluate {run} again") from None
    metrics = value.get("metrics") if isinstance(value, dict) else None
    if not isinstance(metrics, dict):
        raise DamagedRun(f"{path}: no metrics in it, as dltrain evaluate writes them; run dltrain evaluate {run} again")
    if value.get("data_changed") is True:  # evaluated with --allow-changed-data: said beside the figures
        return {**metrics, "data_changed": True}
    return metrics

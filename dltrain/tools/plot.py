"""`dltrain plot`: training curves as a PNG, several runs overlaid; `fit` leaves curves.png too.

matplotlib is an optional extra (`pip install 'dltrain[plot]'`): without it `plot` says so, and
`fit` simply leaves no picture. `fit` draws its curves.png in a process of its own that outlives
it (`python -m dltrain.tools.plot RUN`): importing matplotlib and drawing takes most of a second,
which the user's prompt does not wait for.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dltrain.errors import CheckpointError, DltrainError


@dataclass(frozen=True)
class Plotted:
    path: Path
    curves: int  # lines drawn: training and validation loss and a metric (the monitored one where it is not the loss), per run
    runs: int


def _history(run: Path) -> tuple[pd.DataFrame, str]:
    from dltrain.tools.runs import read_history, read_monitor

    return read_history(run), read_monitor(run)


def _metric_to_show(frame: pd.DataFrame, monitor: str) -> str | None:
    """The monitored metric; when the monitor is the loss, the first validation metric beside it."""
    if monitor in frame and monitor != "val_loss":
        return monitor
    others = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    return others[0] if others else None


def plot(runs: list[str | Path], output: str | Path | None = None, higher: bool | None = None) -> Plotted:
    """Loss (training and validation) and the monitored metric per epoch; the best epoch marked.

    `higher`: whether the monitor is better higher, when the caller knows (fit's background drawing
    then needs no torch); found from the metric registry otherwise.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DltrainError("plotting needs matplotlib: pip install 'dltrain[plot]' (or pip install matplotlib)") from None
    if higher is None:
        from dltrain.train.metrics import higher_is_better
    else:

        def higher_is_better(monitor: str) -> bool:
            return higher

    runs = [Path(r) for r in runs]
    if not runs:
        raise DltrainError("give at least one run directory to plot")
    if any((r / "tune.json").is_file() for r in runs):
        if len(runs) > 1:
            raise DltrainError(f"{next(r for r in runs if (r / 'tune.json').is_file())} is a tune folder: plot it alone (its trials are run directories to overlay)")
        return plot_study(runs[0], output, plt)
    output = _picture(Path(output) if output else (runs[0] / "curves.png" if len(runs) == 1 else Path("curves.png")), "curves.png")
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    curves, metric_curves = 0, 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    monitors = set()
    histories = _readable(runs)
    for n, (run, (frame, monitor)) in enumerate(histories.items()):
        colour = colours[n % len(colours)]
        label = run.name if len(histories) > 1 else ""
        loss_axis.plot(frame["epoch"], frame["train_loss"], color=colour, linestyle="--", label=f"{label} train".strip())
        curves += 1
        if "val_loss" in frame:
            loss_axis.plot(frame["epoch"], frame["val_loss"], color=colour, label=f"{label} validation".strip())
            curves += 1
        shown = _metric_to_show(frame, monitor)
        if shown is not None:
            metric_axis.plot(frame["epoch"], frame[shown], color=colour, label=f"{label} {shown}".strip())
            curves += 1
            metric_curves += 1
            monitors.add(shown)
        from dltrain.tools.runs import best_index

        marked = monitor if monitor in frame else "val_loss" if "val_loss" in frame else "train_loss"
        best = best_index(frame, marked, marked == monitor and higher_is_better(monitor))
        if best is not None:
            for axis in (loss_axis, metric_axis):
                axis.axvline(frame["epoch"][best], color=colour, alpha=0.35, linewidth=1)
    from matplotlib.ticker import MaxNLocator

    for axis in (loss_axis, metric_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.set(title="loss", xlabel="epoch")
    loss_axis.legend(fontsize=8)
    metric_axis.set(title=(", ".join(sorted(monitors)) or "metrics") + " (the monitor's best epoch marked)", xlabel="epoch")
    if metric_curves:
        metric_axis.legend(fontsize=8)
    else:
        metric_axis.text(0.5, 0.5, "no validation metric: see the loss on the left", ha="center", transform=metric_axis.transAxes)
    figure.tight_layout()
    _save(figure, output, plt)
    return Plotted(output, curves, len(histories))


def _readable(runs: list[Path]) -> dict[Path, tuple[pd.DataFrame, str]]:
    """Each run's history and monitor; of several runs, a damaged one is skipped with a warning
    (one run alone, or none readable, is the error)."""
    from dltrain.tools.runs import DamagedRun, skipping_damaged

    if len(runs) == 1:
        return {runs[0]: _history(runs[0])}
    found = {run: skipping_damaged(run, lambda run=run: _history(run)) for run in runs}
    found = {run: history for run, history in found.items() if history is not None}
    if not found:
        raise DamagedRun(f"none of the {len(runs)} runs can be plotted (see the warnings): each needs the metrics.csv and config.yaml that dltrain fit writes")
    return found


def plot_study(folder: Path, output: str | Path | None, plt) -> Plotted:
    """A tune folder: the value of each trial against its number (the best so far as a line), and
    the value against each parameter of the space."""
    import json

    output = _picture(Path(output) if output else folder / "tune.png", "tune.png")
    try:
        study = json.loads((folder / "tune.json").read_text())
        trials = pd.read_csv(folder / "trials.csv")
        metric, higher, space = study["metric"], study["direction"] == "maximize", dict(study.get("space", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CheckpointError(f"{folder}: tune.json and trials.csv are not what dltrain tune writes ({type(error).__name__}: {error})") from None
    trials[metric] = pd.to_numeric(trials.get(metric), errors="coerce")
    shown = trials[trials["state"].isin(["complete", "pruned"]) & trials[metric].notna()]
    panels = 1 + len(space)
    columns = min(3, panels)
    rows = -(-panels // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.6 * rows), dpi=100, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[panels:]:
        unused.set_visible(False)
    complete = shown[shown["state"] == "complete"]
    pruned = shown[shown["state"] == "pruned"]
    axes[0].scatter(complete["trial"], complete[metric], label="complete", zorder=3)
    axes[0].scatter(pruned["trial"], pruned[metric], marker="x", color="grey", label="pruned (when it stopped)", zorder=3)
    if len(complete):
        ordered = complete.sort_values("trial")
        best = ordered[metric].cummax() if higher else ordered[metric].cummin()
        axes[0].step(ordered["trial"], best, where="post", color="C3", label="best so far")
    axes[0].set(title=f"{metric} by trial", xlabel="trial", ylabel=metric)
    axes[0].legend(fontsize=8)
    for axis, (key, info) in zip(axes[1:], space.items()):
        values = shown[key] if key in shown else pd.Series(dtype=object)
        if info.get("kind") == "choice":
            labels = [str(label) for label in info.get("labels", [])]
            positions = values.astype(str).map({label: n for n, label in enumerate(labels)})
            axis.scatter(positions, shown[metric], alpha=0.8)
            axis.set_xticks(range(len(labels)), [_short(label) for label in labels], rotation=15, fontsize=7)
        else:
            axis.scatter(pd.to_numeric(values, errors="coerce"), shown[metric], alpha=0.8)
            if info.get("log"):
                axis.set_xscale("log")
        axis.set(title=key, xlabel=key, ylabel=metric)
    figure.tight_layout()
    _save(figure, output, plt)
    return Plotted(output, len(shown), len(trials))


def _short(label: str) -> str:
    """A choice's label on an axis: a mapping by its type and first argument ({type: SGD, lr: 0.01} -> SGD lr: 0.01)."""
    if label.startswith("{type: "):
        label = label[len("{type: ") :].rstrip("}").replace(",", "", 1)
    return label if len(label) <= 22 else label[:21] + "…"


def _picture(output: Path, name: str) -> Path:
    if output.is_dir():
        raise DltrainError(f"--output {output}: a folder; give a file name such as {output / name}")
    if output.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise DltrainError(f"--output {output}: give a picture file ending in .png (or .svg, .pdf, .jpg)")
    from dltrain.files import check_output

    check_output(output, "--output", REFUSAL, drawn_by_dltrain)  # before drawing: refused at once
    return output


REFUSAL = "was not drawn by dltrain plot"
MARK = {"dltrain": "plot"}  # a PNG's text chunk: dltrain's picture, wherever it is copied


def drawn_by_dltrain(path: Path) -> bool:
    """Whether a PNG carries the mark that dltrain's pictures carry; or is the picture of a run
    directory or a tune folder, which dltrain made whole (those of runs from before the mark too)."""
    path = Path(path)
    if (path.name == "curves.png" and (path.parent / "config.yaml").is_file()) or (path.name == "tune.png" and (path.parent / "tune.json").is_file()):
        return True
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "PNG" and image.text.get("dltrain") == MARK["dltrain"]


def _save(figure, output: Path, plt) -> None:
    picture = io.BytesIO()
    format = output.suffix.lower().lstrip(".").replace("jpg", "jpeg")
    figure.savefig(picture, format=format, metadata=MARK if format == "png" else None)
    plt.close(figure)
    from dltrain.files import write_output

    write_output(output, picture.getvalue(), "--output", REFUSAL, drawn_by_dltrain, sync=False)  # whole or not at all


def leave_curves(run: Path, higher: bool, wait: bool = False) -> subprocess.Popen | None:
    """After `fit`: curves.png in the run directory when matplotlib is there; nothing otherwise.

    Drawn by a process of its own that the caller does not wait for (unless `wait`); it writes the
    picture whole or not at all, and a failure costs only the picture.
    """
    if importlib.util.find_spec("matplotlib") is None:
        return None
    package_root = str(Path(__file__).resolve().parents[2])  # this dltrain, wherever the caller found it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "dltrain.tools.plot", str(Path(run).resolve()), "higher" if higher else "lower"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,  # a Ctrl-C at the prompt afterwards does not stop it
        )  # fmt: skip
    except OSError as error:
        from dltrain.console import warn

        warn(f"curves.png was not drawn: {error}")
        return None
    if wait:
        child.wait()
    return child


def wait_for_curves(run: str | Path, timeout: float = 60.0, name: str = "curves.png") -> bool:
    """True once the run's curves.png (a tune folder's tune.png) is there (drawn in the background), False after `timeout`."""
    end = time.monotonic() + timeout
    path = Path(run) / name
    while not path.is_file():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


if __name__ == "__main__":  # fit's background drawing: python -m dltrain.tools.plot RUN higher|lower
    try:
        plot([sys.argv[1]], higher=sys.argv[2] == "higher")
    except Exception:  # a picture is a convenience: nothing to tell, no one is listening
        sys.exit(1)

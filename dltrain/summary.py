"""What the commands print: tables for check and evaluate, and the summary at the end of fit."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from pathlib import Path

from rich.table import Table

from dltrain.build import Parts
from dltrain.console import out
from dltrain.fitting import FitResult


def _number(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.6g}"
    return str(value)


def _arguments(info: dict | object) -> str:
    arguments = getattr(info, "arguments", {})
    positional = [str(v) for v in getattr(info, "positional", ())]
    return ", ".join(positional + [f"{k}={v}" for k, v in arguments.items()])


def print_check(parts: Parts) -> None:
    console = out()
    plan, data = parts.plan, parts.data
    source = data.info["source"]
    where = ", ".join(f"{k}: {v.get('path') or v.get('url')}" for k, v in source["files"].items()) if "files" in source else (source.get("path") or f"{source.get('url')}  query: {source.get('query')}")
    console.print(f"[bold]Data[/bold]  {where}")
    rows = data.info["rows"]
    line = "  ".join(f"{name} {count}" for name, count in rows.items())
    dropped = data.info.get("dropped", {})
    extra = []
    if dropped.get("missing_target"):
        extra.append(f"{dropped['missing_target']} dropped (no target)")
    if dropped.get("unseen_target"):
        extra.append(f"{dropped['unseen_target']} dropped (class not in train)")
    console.print(f"rows: {line}" + (f"  ({'; '.join(extra)})" if extra else ""))

    columns = Table(title=None, show_edge=False, header_style="bold")
    for name in ("column", "role", "type", "why", "missing", "values"):
        columns.add_column(name, justify="right" if name == "missing" else "left")
    for report in data.columns:
        missing = ""
        if report.missing:
            missing = f"{report.missing} {'dropped' if report.role == 'target' else 'filled'}"
        columns.add_row(report.name, report.role, report.type, report.how, missing, report.detail)
    console.print(columns)
    spec = data.input_spec
    if spec.dtype == "long":
        per_row = f"{spec.shape[0]} token ids"
    elif data.schema.media is None:
        per_row = f"{spec.shape[0]} features"
    else:
        per_row = "a " + " x ".join(map(str, spec.shape)) + " tensor"
    console.print(f"inputs -> {len(data.schema.inputs)} column(s), {per_row} per row")

    console.print("\n[bold]Model[/bold]")
    model = Table(show_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("layer", "left"), ("arguments", "left"), ("output shape", "left"), ("parameters", "right")):
        model.add_column(name, justify=justify)
    model.add_row("", "input", "", _shape(data.input_spec.shape), "")
    number = -1  # from 0, as overrides (model.layers.0.Linear=64) and errors count the layers
    for info in parts.layers:
        if info.depth == 0:
            number += 1
        model.add_row(str(number) if info.depth == 0 else "", ("  " * info.depth) + info.name, _arguments(info), _shape(info.output_shape), f"{info.parameters:,}")
    console.print(model)
    total = sum(p.numel() for p in parts.model.parameters())
    trainable = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    console.print(f"parameters: {total:,} ({trainable:,} trainable); {len(data.splits['train']):,} training rows")

    train = plan.train
    console.print("\n[bold]Training[/bold]")
    console.print(f"loss: {_component(plan.loss)}  (target: {parts.task.target_type}, {parts.task.output_size} output(s))")
    console.print(f"optimizer: {_component(plan.optimizer)}")
    if plan.scheduler is not None:
        console.print(f"scheduler: {_component(plan.scheduler)}, stepped per {plan.scheduler_interval}")
    console.print(
        f"epochs {train.epochs}, batch size {plan.batch_size}, device {train.device}, "
        f"metrics {', '.join(parts.metrics)}, monitor {train.monitor}"
        + (f", early stopping after {train.early_stopping.patience} epochs" if train.early_stopping else "")
    )
    console.print("[green]The config is valid.[/green] Nothing was trained.")


def _component(component) -> str:
    parts = [str(a) for a in component.args] + [f"{k}={v}" for k, v in component.kwargs.items()]
    return component.name + (f"({', '.join(parts)})" if parts else "")


def _shape(shape) -> str:
    return "(batch, " + ", ".join(str(s) for s in shape) + ")" if shape else "(batch,)"


def program() -> str:
    """How to call dltrain again: `dltrain` when it is on PATH, else the path that was used."""
    called = sys.argv[0] if sys.argv else ""
    if Path(called).name == "__main__.py":
        return "python -m dltrain"
    found = shutil.which("dltrain")
    if Path(called).name == "dltrain" and (found is None or Path(found).resolve() != Path(called).resolve()):
        relative = os.path.relpath(called)
        return shlex.quote(called if relative.startswith("..") else relative)
    return "dltrain"


def print_fit(result: FitResult) -> None:
    console = out()
    run = shlex.quote(str(result.run_dir))
    me = program()
    if result.best_epoch is None:
        console.print(f"\nNo epoch improved {result.monitor}. Run directory: {result.run_dir}")
    else:
        from dltrain.train.progress import SHORT, bare

        head = f"Best epoch {result.best_epoch} of {len(result.history)} ({result.monitor}):"
        shown, width = [], len(head)
        for key, value in result.best.items():  # val_ figures in short names, within 100 columns
            if not (key.startswith("val_") or key == "train_loss") or not isinstance(value, float):
                continue
            name = key if key in ("train_loss", "val_loss") else SHORT.get(bare(key), bare(key))
            text = f"{name} {_number(value)}"
            if width + 2 + len(text) > 100 and key != result.monitor:
                continue
            shown.append(text)
            width += 2 + len(text)
        console.print(f"\n[bold]{head}[/bold] {'  '.join(shown)}")
        ties = tied_epochs(result.history, result.monitor, result.best_epoch)
        if len(ties) > 1:
            console.print(
                f"{result.monitor} {_number(result.best[result.monitor])} on {len(ties)} epochs: best.pt holds epoch "
                f"{result.best_epoch}, the one with the lowest val_loss",
                markup=False,
            )
    if result.threshold is not None:
        console.print(f"Decision threshold: {result.threshold:.4f}, the one that maximizes F1 on the validation split (kept in best.pt: evaluate and predict use it)")
    if result.stopped_early:
        console.print(f"Stopped early: {result.monitor} did not improve for the patience given.")
    if result.hint:
        console.print(f"[yellow]{result.hint}[/yellow]")
    console.print(f"Run directory: {result.run_dir}", markup=False, highlight=False)
    if _has_test_split(result.run_dir):
        steps = [("evaluate on the test split:", f"{me} evaluate {run}")]
    else:
        steps = [("evaluate (no test split):", f"{me} evaluate {run} --data LABELLED.csv")]
    example = "NEW_ROWS.csv" if result.inputs == "rows" else "FOLDER_OR_FILES"
    # an output named for the run: following the printed command for a second run does not meet the first's file
    target = shlex.quote(f"{result.run_dir.name}_predictions.csv")
    steps.append((f"predict on new {result.inputs}:", f"{me} predict {run} {example} --output {target}"))
    for line in next_steps(steps, min(console.width, 100)):
        # soft_wrap: a command longer than the terminal stays one line to copy, never broken at a space
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def tied_epochs(history: list[dict], monitor: str, best_epoch: int | None) -> list[int]:
    """The epochs whose monitored metric equals the best epoch's (a saturated val_accuracy of 1.0);
    the trainer breaks the tie by val_loss. None for a loss monitor."""
    if monitor.endswith("loss") or best_epoch is None:
        return []
    best = next((r.get(monitor) for r in history if r["epoch"] == best_epoch), None)
    if not isinstance(best, float) or best != best:
        return []
    return [r["epoch"] for r in history if r.get(monitor) == best]


def next_steps(steps: list[tuple[str, str]], width: int) -> list[str]:
    """Each (label, command) as one aligned line when all fit the width; else each command on a line
    of its own under its label, so that a long run path never splits a command across lines."""
    column = max(len(label) for label, _ in steps) + 2
    aligned = [f"  {label:<{column}}{command}" for label, command in steps]
    if max(map(len, aligned)) <= width:
        return aligned
    return [line for label, command in steps for line in (f"  {label}", f"    {command}")]


def _has_test_split(run_dir: Path) -> bool:
    import json

    try:
        return bool(json.loads((run_dir / "data.json").read_text())["indices"].get("test"))
    except (OSError, ValueError, KeyError, TypeError):
        return True


def print_evaluation(evaluation) -> None:
    console = out()
    table = Table(show_edge=False, header_style="bold", title=f"{evaluation.split}: {evaluation.rows} rows", title_justify="left")
    table.add_column("metric")
    table.add_column("model", justify="right")
    baselines = getattr(evaluation, "baselines", [])
    for baseline in baselines:
        table.add_column(baseline.name, justify="right")
    for name, value in evaluation.metrics.items():
        table.add_row(name, _number(value), *(_number(b.metrics[name]) if name in b.metrics else "" for b in baselines))
    console.print(table)
    for baseline in baselines:
        console.print(f"{baseline.name}: {baseline.what}", markup=False, highlight=False)
    verdict = baseline_verdict(evaluation.metrics, baselines, evaluation.rows)
    if verdict:
        console.print(verdict, markup=False, highlight=False)
    if getattr(evaluation, "baseline_note", None):
        console.print(evaluation.baseline_note, markup=False, highlight=False)
    if evaluation.confusion is not None:
        labels = evaluation.confusion["labels"]
        matrix = Table(show_edge=False, header_style="bold", title="confusion matrix (rows true, columns predicted)", title_justify="left")
        matrix.add_column("")
        for label in labels:
            matrix.add_column(label, justify="right")
        for label, row in zip(labels, evaluation.confusion["matrix"]):
            matrix.add_row(label, *map(str, row))
        console.print(matrix)
    if evaluation.path is not None:
        console.print(f"written: {evaluation.path}")


PRIMARY = ("r2", "accuracy", "auc", "rmse", "mae")  # the figure a verdict reads, the first the result has


def baseline_verdict(metrics: dict[str, float], baselines: list, rows: int) -> str | None:
    """A line when the model scores no better than a baseline on its main figure (r2, accuracy)."""
    from dltrain.train.metrics import METRICS

    name = next((n for n in PRIMARY if n in metrics), None)
    if name is None:
        return None
    higher = METRICS.get(name).higher_is_better
    model = metrics[name]
    for baseline in sorted(baselines, key=lambda b: b.name != "linear"):  # the stronger claim first
        other = baseline.metrics.get(name, math.nan)
        if math.isnan(model) or math.isnan(other) or ((model > other) if higher else (model < other)):
            continue
        scores = f"{name} {_number(other)} against the network's {_number(model)} on {rows} rows"
        if baseline.name == "linear":
            return (
                f"the linear model scores at least as well as the network ({scores}): the network has learned nothing "
                "here that a linear model does not. On a small table that is common, and the linear model may be the one "
                "to keep; else try a wider network or more epochs (dltrain init writes both from the data)"
            )
        return f"the network scores no better than always predicting the {baseline.name} ({scores}): it has not learned from the inputs"
    return None


def _layer_arguments(arguments, budget: int = 44) -> str:
    """The list's arguments column: inferred (italic) and required names, then the optional ones while they fit."""
    from rich.markup import escape

    shown = [f"[italic]{escape(a.name)}*[/italic]" if a.inferred else escape(a.name + ("..." if a.many else "")) for a in arguments if a.inferred or a.required]
    length = sum(len(a.name) + 3 for a in arguments if a.inferred or a.required)
    optional = [a for a in arguments if not (a.inferred or a.required)]
    for index, argument in enumerate(optional):
        text = f"{argument.name}={argument.default!r}"
        left = len(optional) - index
        if length + len(text) + 2 > budget and (left > 1 or length + len(text) + 2 > budget + 12):
            shown.append(f"+{left} optional")
            break
        shown.append(escape(text))
        length += len(text) + 2
    return ", ".join(shown)


def print_layers() -> None:
    from dltrain.model.registry import describe_layer, layer_registry

    table = Table(show_edge=False, header_style="bold", expand=True)
    table.add_column("layer", no_wrap=True)
    table.add_column("what it does", ratio=5)
    table.add_column("arguments (* inferred)", ratio=3)
    for name in layer_registry().names():
        entry, arguments = describe_layer(name)
        ours = entry.factory.__module__.startswith("dltrain")
        table.add_row(name + (" (dltrain)" if ours else ""), entry.summary, _layer_arguments(arguments))
    out().print(table)
    out().print("dltrain layers NAME shows one layer's arguments in full, with an example.", markup=False)


def print_layer(name: str) -> None:
    from dltrain.components import ComponentError
    from dltrain.errors import UsageError
    from dltrain.model.registry import describe_layer, layer_examples

    try:
        entry, arguments = describe_layer(name)
    except ComponentError as error:
        raise UsageError(str(error)) from None
    console = out()
    ours = entry.factory.__module__.startswith("dltrain")  # Flatten is dltrain's entry but torch's class
    console.print(f"[bold]{entry.name}[/bold]" + ("  (dltrain's own layer)" if ours else f"  (torch.nn.{entry.factory.__name__})"))
    if entry.description:
        console.print(entry.description, markup=False)
    if arguments:
        table = Table(show_edge=False, header_style="bold")
        table.add_column("argument", no_wrap=True)
        table.add_column("default", overflow="fold")
        table.add_column("what it is", ratio=1)
        for argument in arguments:
            value = argument.default
            default = "" if argument.required or argument.inferred else getattr(value, "__name__", None) if callable(value) else repr(value)
            note = argument.note
            described = argument.description.rstrip(".")
            if argument.inferred and len(described) > 60:  # how dltrain fills it matters more than torch's words
                described = ""
            what = "; ".join(part for part in (described, note if note != "required" else "") if part)
            if argument.required:
                what = "required" + (f": {what}" if what else "")
            table.add_row(argument.name + ("..." if argument.many else ""), default, what, end_section=False)
        console.print(table)
    else:
        console.print("no arguments", markup=False)
    inferred = [a.name for a in arguments if a.inferred]
    console.print("in a config, under model.layers" + (f" ({', '.join(inferred)} left out: dltrain fills it in)" if inferred else "") + ":", markup=False)
    for line in layer_examples(entry.name):
        console.print(f"  - {line}", markup=False)


def print_runs(rows, folder) -> None:
    console = out()
    if not rows:
        console.print(f"no runs under {folder}", markup=False)
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("run", "date", "epochs", "monitor", "best", "epoch", "test"):
        table.add_column(column, justify="right" if column in ("epochs", "best", "epoch") else "left")
    for row in rows:
        test = _test_figures(row.test)
        if row.test.get("data_changed") is True:
            test += "  (on changed data)"
        if row.trials is not None:  # a tune folder: one study, its best trial
            at = f"trial {row.best_epoch}" if row.best_epoch is not None else ""
            table.add_row(f"{row.name} (study, {row.trials} trials)", row.date, str(row.epochs or ""), row.monitor, _number(row.best), at, test)
            continue
        table.add_row(row.name, row.date, str(row.epochs), row.monitor, _number(row.best), str(row.best_epoch or ""), test)
    console.print(table)


# the test figures `runs` shows, in this order, at most RUNS_SHOWN of them: the table fits 100 columns
RUNS_TEST = ("accuracy", "auc", "balanced_accuracy", "macro_f1", "r2", "rmse", "mae", "loss")
RUNS_SHOWN = 2


def _test_figures(test: dict) -> str:
    """A run's test metrics in short names, the main ones first (evaluate_test.json holds them all)."""
    from dltrain.train.progress import SHORT

    floats = {k: v for k, v in test.items() if isinstance(v, float)}
    keys = [k for k in RUNS_TEST if k in floats] or list(floats)
    return "  ".join(f"{SHORT.get(k, k)} {_number(floats[k])}" for k in keys[:RUNS_SHOWN])


def print_tune(result, limit: int = 30) -> None:
    """The trials, best first (params, value, epochs, state), the importances and where best.yaml is."""
    console = out()
    rows = result.rows
    if not rows:
        console.print(f"no trials in {result.folder}", markup=False)
        return
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    finished = sum(r.state in ("complete", "pruned", "failed") for r in rows)
    count = f"{finished} trials ({result.trials} asked for)" if finished > result.trials else f"{finished} of {result.trials} trials"
    table = Table(show_edge=False, header_style="bold", title=f"{result.folder}: {count}, {result.metric} {'up' if result.higher else 'down'}, best first")
    for column in ("trial", result.metric, "epochs", "state", *keys):
        table.add_column(column, justify="right" if column in ("trial", result.metric, "epochs") else "left", overflow="fold")
    for row in rows[:limit]:
        state = row.state + (f" ({row.note})" if row.note else "")
        mark = " *" if result.best is not None and row.number == result.best.number else ""
        table.add_row(f"{row.number}{mark}", "" if math.isnan(row.value) else f"{row.value:.6g}", "" if row.epochs is None else str(row.epochs), state, *(_param(row.params.get(k, "")) for k in keys))
    console.print(table)
    if len(rows) > limit:
        console.print(f"... and {len(rows) - limit} more: {result.folder / 'trials.csv'}", markup=False)
    if result.importances:
        console.print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in result.importances.items()), markup=False)
    if result.best is None:
        console.print("no trial completed: see the state column for why", markup=False)
        return
    console.print(f"best: trial {result.best.number}, {result.metric} {result.best.value:.6g} ({result.best.run})", markup=False)
    if result.best_yaml is not None:
        console.print(f"its config: {result.best_yaml}; train it with: {program()} fit {shlex.quote(str(result.best_yaml))}", markup=False)
    console.print(f"plot: {result.folder / 'tune.png'} (or {program()} plot {shlex.quote(str(result.folder))})", markup=False)


def _param(value) -> str:
    """A trial's value in the table: a number to 4 digits, a mapping by its type ({type: SGD, momentum: 0.9} -> SGD momentum: 0.9)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text[len("{type: ") :].rstrip("}").replace(",", "", 1) if text.startswith("{type: ") else text

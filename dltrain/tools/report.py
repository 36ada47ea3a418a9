"""`dltrain report`: one self-contained HTML file about a run on a split (several runs side by side).

Computed from the checkpoint alone plus the rows it scores, through the same `inference.score` as
`evaluate`, so its metrics and confusion matrix are the ones evaluate_<split>.json holds. Pictures
are drawn with matplotlib (the `plot` extra) and inlined as PNG; styles are inline; no script and
nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dltrain.errors import DltrainError, UsageError

WORST = 12  # examples shown
REPEATS = 5  # permutations per column for the importance
BINS = 10  # of the reliability diagram

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}tr.baseline td{color:#666;font-style:italic}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%}pre{background:#f7f7f7;padding:8px;overflow:auto}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;width:120px;font-size:12px}
.thumbs img{width:112px;height:112px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
@media print{details{display:block}body{max-width:none}}
"""


@dataclass(frozen=True)
class Reported:
    path: Path
    runs: int
    rows: int  # scored rows of the first run
    sections: tuple[str, ...]


def report(runs: list[str | Path], split: str = "test", output: str | Path | None = None, data: str | Path | None = None, baseline: bool = True) -> Reported:
    """Write the report of `runs` on `split` (or on a labelled file `data`); returns where. With
    `baseline`, the metrics table also holds the first run's baselines (evaluate's) on the same rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DltrainError("the report draws with matplotlib: pip install 'dltrain[plot]' (or pip install matplotlib)") from None
    from dltrain.files import check_output
    from dltrain.inference import result_name

    runs = [Path(r) for r in runs]
    if not runs:
        raise UsageError("give at least one run directory to report on")
    output = Path(output) if output else (runs[0] / f"report_{result_name(split, data)}.html")
    if output.is_dir():
        raise UsageError(f"--output {output}: a folder; give a file name such as {output / 'report.html'}")
    check_output(output, "--output", REFUSAL, written_by_report)  # before the work: refused at once
    scored = _scored(runs, split, data)
    first = scored[0]
    parts: list[tuple[str, str]] = []
    parts.append(("Metrics", _metrics_table(scored, baseline)))
    parts.append(("Training curves", _img(_curves(plt, [s.loaded.run_dir for s in scored], first.loaded))))
    if first.loaded.task.is_classification:
        parts += _classes(plt, first)
    else:
        parts += _numbers(plt, first)
    parts.append(("The worst-predicted examples", _worst(first)))
    if first.loaded.schema.media is None:
        parts.append(("Which inputs matter: permutation importance", _importance(plt, first)))
    parts.append(("Data", _data(first)))
    parts.append(("Model", _model(first)))
    parts.append(("Config as run", f"<details><summary>config.yaml</summary><pre>{html.escape(_yaml(first.loaded.recipe.config))}</pre></details>"))
    names = ", ".join(html.escape(s.loaded.run_dir.name) for s in scored)
    body = "".join(f"<h2>{html.escape(title)}</h2>\n{content}\n" for title, content in parts)
    page = (
        f"{MARK}<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{names}: {html.escape(first.name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{names}: the {html.escape(first.name)} split, {first.seen.rows} rows</h1>"
        f"<p>{html.escape(str(first.loaded.run_dir))}, written {time.strftime('%Y-%m-%d %H:%M')}</p>\n{body}</body></html>\n"
    )
    from dltrain.files import write_output

    write_output(output, page.encode("utf-8"), "--output", REFUSAL, written_by_report, sync=False)
    return Reported(output, len(scored), first.seen.rows, tuple(t for t, _ in parts))


MARK = "<!DOCTYPE html>\n<!-- dltrain report -->\n"  # how every report begins
REFUSAL = "was not written by dltrain report"


def written_by_report(path: Path) -> bool:
    """Whether the file begins as dltrain's reports begin: a report needs no entry in its folder's list."""
    with open(path, "rb") as handle:
        return handle.read(len(MARK)) == MARK.encode()


def _scored(runs: list[Path], split: str, data: str | Path | None) -> list:
    """Each run scored; of several runs, one whose checkpoint cannot be loaded is skipped with a
    warning (one run alone, or none loadable, is the error)."""
    from dltrain.errors import CheckpointError
    from dltrain.inference import score

    if len(runs) == 1:
        return [score(runs[0], split, data)]
    from dltrain.console import warn

    scored, first_error = [], None
    for run in runs:
        try:
            scored.append(score(run, split, data))
        except CheckpointError as error:
            warn(f"skipped {run}: {error}")
            first_error = first_error or error
    if not scored:
        raise first_error
    return scored


# ----- pieces


def _img(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f"<img alt='' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _number(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1e4 else f"{value:.6g}"
    return html.escape(str(value))


def _metrics_table(scored, baseline: bool = True) -> str:
    """Each run's metrics; below them the first run's baselines, as evaluate scores them (the
    training majority or mean, a linear model on the same inputs), each with what it is."""
    keys = list(dict.fromkeys(k for s in scored for k in s.metrics))
    head = "<tr><th class='l'>run</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>"
    rows = "".join(
        f"<tr><td class='l'>{html.escape(s.loaded.run_dir.name)}</td>" + "".join(f"<td>{_number(s.metrics.get(k, math.nan))}</td>" for k in keys) + "</tr>" for s in scored
    )
    notes = ""
    if baseline:
        from dltrain.inference import baselines

        found, note = baselines(scored[0])
        for b in found:
            rows += f"<tr class='baseline'><td class='l'>{html.escape(b.name)} (baseline)</td>" + "".join(
                f"<td>{_number(b.metrics[k]) if k in b.metrics else ''}</td>" for k in keys
            ) + "</tr>"
        notes = "".join(f"<p>{html.escape(b.name)}: {html.escape(b.what)}</p>" for b in found) + (f"<p>{html.escape(note)}</p>" if note else "")
    return f"<table>{head}{rows}</table>{notes}"


def _curves(plt, runs: list[Path], loaded):
    from dltrain.train.metrics import higher_is_better

    monitor = (loaded.recipe.config.get("train") or {}).get("monitor", "val_loss")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    from dltrain.tools.runs import best_index, read_history, skipping_damaged

    for n, run in enumerate(runs):
        if not (run / "metrics.csv").is_file():
            continue
        frame = skipping_damaged(run, lambda run=run: read_history(run), "no training curves of")
        if frame is None:
            continue
        label = run.name if len(runs) > 1 else ""
        colour = f"C{n}"
        left.plot(frame["epoch"], frame["train_loss"], "--", color=colour, label=f"{label} train".strip())
        if "val_loss" in frame:
            left.plot(frame["epoch"], frame["val_loss"], color=colour, label=f"{label} validation".strip())
        if monitor in frame:
            right.plot(frame["epoch"], frame[monitor], color=colour, label=f"{label} {monitor}".strip())
            best = best_index(frame, monitor, higher_is_better(monitor))
            if best is not None:
                for axis in (left, right):
                    axis.axvline(frame["epoch"][best], color=colour, alpha=0.3)
    left.set(title="loss", xlabel="epoch")
    right.set(title=f"{monitor} (the best epoch marked)", xlabel="epoch")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _classes(plt, scored) -> list[tuple[str, str]]:
    task = scored.loaded.task
    classes = list(task.classes)
    matrix = np.asarray(scored.confusion["matrix"], dtype=float)
    probabilities = scored.outcome.probabilities().double().cpu().numpy()
    labels = scored.outcome.labels().cpu().numpy()
    parts = []
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    normalized = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for axis, values, title in ((axes[0], matrix, "counts"), (axes[1], normalized, "share of each true class")):
        axis.imshow(values, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                text = f"{int(values[i, j])}" if values is matrix else f"{values[i, j]:.2f}"
                axis.text(j, i, text, ha="center", va="center", color="white" if values[i, j] > values.max() / 2 else "black", fontsize=8)
        axis.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(classes)), yticks=range(len(classes)))
        axis.set_xticklabels(classes, rotation=30, fontsize=8)
        axis.set_yticklabels(classes, fontsize=8)
    figure.tight_layout()
    head = "<tr><th class='l'>true \\ predicted</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in classes) + "</tr>"
    counts = "".join(f"<tr><th class='l'>{html.escape(c)}</th>" + "".join(f"<td>{int(v)}</td>" for v in matrix[i]) + "</tr>" for i, c in enumerate(classes))
    parts.append(("Confusion matrix (rows true, columns predicted)", _img(figure) + f"<table class='confusion'>{head}{counts}</table>"))
    support = matrix.sum(1)
    predicted = matrix.sum(0)
    rows = ""
    for k, name in enumerate(classes):
        tp = matrix[k, k]
        precision = tp / predicted[k] if predicted[k] else math.nan
        recall = tp / support[k] if support[k] else math.nan
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
        rows += f"<tr><td class='l'>{html.escape(name)}</td><td>{_number(precision)}</td><td>{_number(recall)}</td><td>{_number(f1)}</td><td>{int(support[k])}</td></tr>"
    parts.append(("Each class", f"<table><tr><th class='l'>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"))
    curves = roc_pr(probabilities, labels, len(classes))
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4))
    shown = [1] if len(classes) == 2 else range(len(classes))  # binary: the positive class
    for k in shown:
        c = curves[k]
        if c is None:
            continue
        roc_axis.plot(c["fpr"], c["tpr"], label=f"{classes[k]}: AUC {c['auc']:.3f}")
        pr_axis.plot(c["recall"], c["precision"], label=f"{classes[k]}: AP {c['ap']:.3f}")
    roc_axis.plot([0, 1], [0, 1], ":", color="grey")
    roc_axis.set(title="ROC" + (" (one class against the rest)" if len(classes) > 2 else ""), xlabel="false positive rate", ylabel="true positive rate")
    pr_axis.set(title="precision and recall", xlabel="recall", ylabel="precision")
    roc_axis.legend(fontsize=8)
    pr_axis.legend(fontsize=8)
    figure.tight_layout()
    aucs = [curves[k]["auc"] for k in shown if curves[k] is not None]
    macro = f"<p>ROC AUC{' (macro, one against the rest)' if len(classes) > 2 else ''}: {_number(float(np.mean(aucs))) if aucs else 'undefined'}</p>"
    parts.append(("ROC and precision-recall curves", macro + _img(figure)))
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    table, ece = reliability(confidence, correct)
    figure, axis = plt.subplots(figsize=(5, 4))
    centers = [(row["low"] + row["high"]) / 2 for row in table if row["rows"]]
    axis.bar(centers, [row["accuracy"] for row in table if row["rows"]], width=1 / BINS * 0.9, alpha=0.7, label="accuracy")
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    axis.set(title=f"reliability: expected calibration error {ece:.3f}", xlabel="confidence (the top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    axis.legend(fontsize=8)
    parts.append(("Calibration", _img(figure)))
    return parts


def roc_pr(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> list[dict | None]:
    """For each class against the rest: the ROC curve and its area (ties as one threshold), the
    precision-recall curve and the average precision. None for a class absent or everywhere."""
    result = []
    for k in range(classes):
        positive = labels == k
        if positive.all() or not positive.any():
            result.append(None)
            continue
        score = probabilities[:, k]
        order = np.argsort(-score, kind="mergesort")
        score, positive = score[order], positive[order]
        ends = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]  # the last row of each distinct score
        tp = np.cumsum(positive)[ends].astype(float)
        fp = (ends + 1 - tp).astype(float)
        tpr = np.r_[0, tp / tp[-1]]
        fpr = np.r_[0, fp / fp[-1]]
        precision = tp / (tp + fp)
        recall = tp / tp[-1]
        ap = float(np.sum(np.diff(np.r_[0, recall]) * precision))
        result.append({"fpr": fpr, "tpr": tpr, "auc": float(np.trapezoid(tpr, fpr)), "precision": np.r_[1, precision], "recall": np.r_[0, recall], "ap": ap})
    return result


def reliability(confidence: np.ndarray, correct: np.ndarray) -> tuple[list[dict], float]:
    """Rows per confidence bin, their accuracy and mean confidence; and the expected calibration error."""
    table, ece = [], 0.0
    for b in range(BINS):
        low, high = b / BINS, (b + 1) / BINS
        inside = (confidence > low) & (confidence <= high) if b else (confidence >= low) & (confidence <= high)
        n = int(inside.sum())
        accuracy = float(correct[inside].mean()) if n else math.nan
        mean = float(confidence[inside].mean()) if n else math.nan
        if n:
            ece += n / len(confidence) * abs(accuracy - mean)
        table.append({"low": low, "high": high, "rows": n, "accuracy": accuracy, "confidence": mean})
    return table, ece


def _numbers(plt, scored) -> list[tuple[str, str]]:
    task = scored.loaded.task
    predicted = task.values(scored.seen.outputs).cpu().numpy()
    actual = task.values(scored.seen.targets).cpu().numpy()
    error = predicted - actual
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].scatter(actual, predicted, s=10, alpha=0.6)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    axes[0].plot([low, high], [low, high], ":", color="grey")
    axes[0].set(title="predicted against true", xlabel="true", ylabel="predicted")
    axes[1].scatter(predicted, error, s=10, alpha=0.6)
    axes[1].axhline(0, color="grey", linestyle=":")
    axes[1].set(title="residuals against predicted", xlabel="predicted", ylabel="predicted - true")
    axes[2].hist(error, bins=30)
    axes[2].set(title="the error's distribution", xlabel="predicted - true", ylabel="rows")
    figure.tight_layout()
    shown = " ".join(f"{k} {_number(v)}" for k, v in scored.metrics.items() if k in ("r2", "mae", "rmse"))
    return [("Predictions (in the target's own units)", f"<p>{shown}</p>" + _img(figure))]


def _source_rows(scored) -> pd.DataFrame | None:
    """The raw rows scored (their columns as in the data), for the table of worst examples."""
    from dltrain.data.prepare import open_table, recorded_sources

    columns = list(dict.fromkeys([*scored.loaded.schema.input_columns, scored.loaded.schema.target.column]))
    try:
        if scored.data is not None:  # a labelled file: its rows as read
            from dltrain.inference import read_input

            frame = read_input(scored.data)[columns].reset_index(drop=True)
        else:
            frame = open_table(recorded_sources(scored.loaded.recipe.data), True).columns(columns)
        return frame.iloc[np.asarray(scored.rows.rows)].reset_index(drop=True)
    except Exception:  # a report without the raw rows is still a report
        return None


def _worst(scored) -> str:
    task = scored.loaded.task
    if task.is_classification:
        probabilities = scored.outcome.probabilities().double().cpu().numpy()
        labels = scored.outcome.labels().cpu().numpy()
        true_probability = probabilities[np.arange(len(labels)), labels]
        order = np.argsort(true_probability, kind="mergesort")[:WORST]
        predicted = probabilities.argmax(1)
        notes = [f"true {task.classes[labels[i]]}, predicted {task.classes[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})" for i in order]
    else:
        predicted = task.values(scored.seen.outputs).cpu().numpy()
        actual = task.values(scored.seen.targets).cpu().numpy()
        order = np.argsort(-np.abs(predicted - actual), kind="mergesort")[:WORST]
        notes = [f"true {actual[i]:.4g}, predicted {predicted[i]:.4g}" for i in order]
    rows = _source_rows(scored)
    files = scored.loaded.schema.files
    if rows is not None and files is not None and files.type == "image":
        figures = "".join(f"<figure>{_thumbnail(rows[files.column].iloc[i])}<figcaption>{html.escape(note)}</figcaption></figure>" for i, note in zip(order, notes))
        return f"<div class='thumbs'>{figures}</div>"
    if files is not None and files.type == "audio":  # the spectrogram the model heard, for each
        figures = "".join(f"<figure>{_spectrogram(scored.rows.x[i])}<figcaption>{html.escape(note)}</figcaption></figure>" for i, note in zip(order, notes))
        return f"<div class='thumbs'>{figures}</div>"
    if rows is None:
        return "<ul>" + "".join(f"<li>row {int(scored.rows.rows[i])}: {html.escape(n)}</li>" for i, n in zip(order, notes)) + "</ul>"
    shown = rows.iloc[order].copy()
    shown.insert(0, "outcome", notes)
    return shown.to_html(index=False, escape=True, border=0, na_rep="(missing)")


def _thumbnail(path: str) -> str:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.thumbnail((112, 112))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        return f"<img alt='{html.escape(Path(path).name)}' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
    except OSError:
        return f"<span>{html.escape(Path(path).name)} (cannot be read)</span>"


def _spectrogram(x: torch.Tensor) -> str:
    """An encoded (1, frequency, time) spectrogram as a small picture, low frequencies at the bottom."""
    from matplotlib import colormaps
    from PIL import Image

    values = x.float().reshape(-1, x.shape[-1]).cpu().numpy()[::-1]
    span = float(values.max() - values.min()) or 1.0
    rgb = (colormaps["magma"]((values - values.min()) / span)[..., :3] * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).resize((112, 112)).save(buffer, format="PNG")
    return f"<img alt='spectrogram' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def permutation_importance(scored, repeats: int = REPEATS, seed: int = 0) -> list[dict]:
    """For each input column: how much the loss grows when its values are shuffled among the rows
    (the mean and spread over `repeats`), on the scored rows; highest first."""
    from dltrain.train.trainer import infer

    loaded = scored.loaded
    x, y = scored.rows.x, scored.rows.y
    base = float(scored.seen.loss_sum) / scored.seen.rows
    generator = torch.Generator().manual_seed(seed)
    result, offset = [], 0
    for encoder in loaded.schema.inputs:
        width = encoder.width
        drops = []
        for _ in range(repeats):
            order = torch.randperm(len(x), generator=generator)
            shuffled = x.clone()
            shuffled[:, offset : offset + width] = x[order.to(x.device), offset : offset + width]
            from dltrain.data.batches import TensorSplit

            seen = infer(loaded.model, loaded.loss_fn, TensorSplit(shuffled, y, scored.rows.rows).batches(loaded.recipe.batch_size), loaded.schema.batch_transform(train=False))
            drops.append(float(seen.loss_sum) / seen.rows - base)
        result.append({"column": encoder.column, "type": encoder.type, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
        offset += width
    return sorted(result, key=lambda r: -r["mean"])


def _importance(plt, scored) -> str:
    found = permutation_importance(scored)
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(found) + 1.2))
    axis.barh([r["column"] for r in found][::-1], [r["mean"] for r in found][::-1], xerr=[r["std"] for r in found][::-1], color="C0")
    axis.set(title=f"the loss's rise when a column is shuffled ({REPEATS} times each, seeded)", xlabel="loss with the column shuffled - loss")
    figure.tight_layout()
    return _img(figure)


def _data(scored) -> str:
    info = scored.loaded.recipe.data
    schema = scored.loaded.schema
    rows = " ".join(f"{k} {v}" for k, v in info.get("rows", {}).items())
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (info.get("dropped") or {}).items() if v)
    raw = _source_rows(scored)
    missing = raw.isna().sum() if raw is not None else {}
    columns = "".join(
        f"<tr><td class='l'>{html.escape(e.column)}</td><td class='l'>{html.escape(e.type)}</td><td>{e.width if e.tabular else ''}</td>"
        f"<td>{int(missing[e.column]) if e.column in missing else ''}</td></tr>"
        for e in schema.inputs
    )
    target = schema.target
    classes = f", classes: {', '.join(map(str, getattr(target, 'classes', ())))}" if getattr(target, "classes", None) else ""
    balance = ""
    if scored.loaded.task.is_classification:
        counts = np.asarray(scored.confusion["matrix"]).sum(1)
        balance = "<p>classes in this split: " + ", ".join(f"{html.escape(str(c))} {int(n)}" for c, n in zip(scored.loaded.task.classes, counts)) + "</p>"
    return (
        f"<p>source: <code>{html.escape(json.dumps(info.get('source')))}</code><br>rows: {rows}{'; dropped: ' + dropped if dropped else ''}</p>"
        f"<p>target: {html.escape(target.column)} ({html.escape(target.type)}{html.escape(classes)})</p>{balance}"
        f"<table><tr><th class='l'>input column</th><th class='l'>type</th><th>features</th><th>missing in this split</th></tr>{columns}</table>"
    )


def _model(scored) -> str:
    rows = ""
    for layer in scored.loaded.recipe.summary:
        arguments = ", ".join(f"{k}={v}" for k, v in (layer.get("arguments") or {}).items())
        indent = "&nbsp;" * 4 * int(layer.get("depth", 0))
        rows += f"<tr><td class='l'>{indent}{html.escape(layer['name'])}</td><td class='l'>{html.escape(arguments)}</td><td>(batch, {', '.join(map(str, layer.get('output_shape', [])))})</td><td>{layer.get('parameters', 0):,}</td></tr>"
    total = sum(int(layer.get("parameters", 0)) for layer in scored.loaded.recipe.summary if not layer.get("depth"))
    return f"<table><tr><th class='l'>layer</th><th class='l'>arguments</th><th>output</th><th>parameters</th></tr>{rows}</table><p>parameters: {total:,}</p>"


def _yaml(config: dict) -> str:
    from dltrain.config.yaml import dump_yaml

    return dump_yaml(config)

"""`dltrain cv`: k-fold cross-validation, each fold a full run directory.

The rows with a target are dealt into `folds` folds, seeded by the config's seed: class by class
for a classification target (stratified: each class's count in every fold within one of the
others'), all together for a number. Fold k is trained with fold k as its test split and a
validation split carved from the other folds (stratified, in the config's val : train ratio), in
DIR/fold-k; DIR/cv.json holds the mean and standard deviation of each test metric, and DIR/oof.csv
each row's out-of-fold prediction.

The folds reach the ordinary split machinery as a split column: each fold trains on a copy of the
table (DIR/data/fold-k.csv) with one more column, `cv_split`, holding train/val/test (or, for a
config split by a column, that column rewritten). The user's own data is only read; the copies stay,
so each fold's run can be evaluated like any run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

SPLIT_COLUMN = "cv_split"
DEFAULT_VAL = 1 / 9  # a config split by a column: val as in the default 0.8 / 0.1 / 0.1


@dataclass
class CvResult:
    folder: Path
    runs: list[Path]
    metrics: dict[str, dict]  # name -> {"mean", "std", "folds": [...]}
    rows: int  # the rows with an out-of-fold prediction

    def to_dict(self) -> dict:
        return {"folds": len(self.runs), "rows": self.rows, "runs": [str(r) for r in self.runs], "metrics": self.metrics}


def cv(config, overrides: list[str] | tuple[str, ...] = (), folds: int = 5, out: str | Path | None = None, progress: bool = True) -> CvResult:
    """Train one run per fold and summarize their test metrics; see the module's docstring."""
    import pandas as pd

    from dltrain.config.schema import ByColumn, Files, Ratios
    from dltrain.console import note
    from dltrain.data.sources import read_table
    from dltrain.errors import DataError, UsageError
    from dltrain.files import write_output
    from dltrain.fitting import fit
    from dltrain.inference import json_safe
    from dltrain.plan import make_plan
    from dltrain.rundir import make_run_dir
    from dltrain.task import STANDARDIZED
    from dltrain.tools.lrfind import resolve_auto_lr, with_placeholder

    if folds < 2:
        raise UsageError(f"--folds {folds}: cross-validation needs at least 2 folds (5 is usual)")
    overrides = list(overrides)
    plan = make_plan(config, with_placeholder(config, overrides) if _has_auto(config, overrides) else overrides)
    split = plan.cfg.config.data.split
    if isinstance(split, Files):
        raise plan.error(("data", "split"), "gives one file per split, and dltrain cv makes its own folds from one table: give data.source (one table) instead of files")
    source = plan.data.sources[""]
    target = plan.data.target.name
    frame = read_table(source)
    if target not in frame.columns:
        raise DataError(f"column '{target}' is not in {source.label}", key=("data", "target"))
    classes = plan.loss_entry.form != STANDARDIZED
    assignment = assign_folds(frame[target], folds, plan.seed, classes)
    val_share = DEFAULT_VAL if isinstance(split, ByColumn) else (split.val / (split.train + split.val) if isinstance(split, Ratios) and split.train + split.val > 0 else 0.0)
    column = split.column if isinstance(split, ByColumn) else _free_name(SPLIT_COLUMN, frame.columns)
    overrides, _ = resolve_auto_lr(config, overrides)  # one rate for every fold, from the config's own split
    folder = make_run_dir(out, plan.train.out_dir, f"{plan.name}-cv")
    note(f"cross-validation: {folds} folds in {folder}")
    runs, per_fold, predictions = [], [], []
    for k in range(folds):
        roles = fold_roles(frame[target], assignment, k, val_share, plan.seed + k, classes)
        copy_path = folder / "data" / f"fold-{k + 1}.csv"
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        frame.assign(**{column: roles}).to_csv(copy_path, index=False)
        fold_overrides = [*overrides, f"data.source={json.dumps(str(copy_path.resolve()))}", f"data.split={{column: {column}}}"]
        note(f"fold {k + 1} of {folds}: {int((roles == 'test').sum())} test rows, {int((roles == 'val').sum())} val, {int((roles == 'train').sum())} train")
        run = fit(config, fold_overrides, out=folder / f"fold-{k + 1}", progress=progress, curves=False).run_dir
        metrics, oof = _score_fold(run, k + 1, frame[target])
        runs.append(run)
        per_fold.append(metrics)
        predictions.append(oof)
    summary = summarize(per_fold)
    oof = pd.concat(predictions, ignore_index=True).sort_values("row", kind="stable")
    result = CvResult(folder, runs, summary, len(oof))
    write_output(folder / "oof.csv", oof.to_csv(index=False).encode(), "", "was not written by dltrain cv")
    write_output(folder / "cv.json", (json.dumps(json_safe(result.to_dict()), indent=2) + "\n").encode(), "", "was not written by dltrain cv")
    return result


def _has_auto(config, overrides: list[str]) -> bool:
    from dltrain.tools.lrfind import auto_lr_path

    return auto_lr_path(config, overrides) is not None


def _free_name(name: str, taken) -> str:
    taken = {str(c) for c in taken}
    while name in taken:
        name = f"_{name}"
    return name


def assign_folds(values, folds: int, seed: int, classes: bool):
    """The fold (0 to folds - 1) of each row; -1 for rows without a target. Classes are dealt one
    after another into the folds in turn, so every class and every fold's total is even to one row."""
    import numpy as np

    from dltrain.data.encoders import keys
    from dltrain.errors import UsageError

    labels = keys(values)
    has = labels.notna().to_numpy()
    rows = np.flatnonzero(has)
    rng = np.random.default_rng(seed)
    if classes:
        counts = labels[has].value_counts()
        fewest, smallest = int(counts.min()), counts.idxmin()
        if fewest < folds:
            fix = f"give --folds {fewest} or fewer" if fewest >= 2 else "drop its row, or merge it into another class"
            raise UsageError(
                f"--folds {folds}: the smallest class of target '{values.name}', '{smallest}', has {fewest} row(s), and "
                f"stratified folds need a row of each class in every fold: {fix}"
            )
        codes = labels[has].to_numpy()
        order = np.concatenate([rng.permutation(rows[codes == c]) for c in sorted(set(codes))])
    else:
        if len(rows) < folds:
            raise UsageError(f"--folds {folds}: the table has {len(rows)} rows with a target, fewer than the folds")
        order = rng.permutation(rows)
    assignment = np.full(len(values), -1)
    assignment[order] = np.arange(len(order)) % folds
    return assignment


def fold_roles(values, assignment, fold: int, val_share: float, seed: int, classes: bool):
    """train / val / test of each row for one fold: the fold is test; val is carved from the rest."""
    import numpy as np

    from dltrain.data.encoders import keys
    from dltrain.data.split import split_by_ratios

    roles = np.full(len(values), "train", dtype=object)  # rows without a target: dropped by fit
    roles[assignment == fold] = "test"
    if val_share > 0:
        rest = np.flatnonzero((assignment != fold) & (assignment >= 0))
        strata = keys(values.iloc[rest]).reset_index(drop=True) if classes else None
        local = split_by_ratios(len(rest), {"train": 1 - val_share, "val": val_share}, seed, strata)
        roles[rest[local.get("val", np.array([], dtype=int))]] = "val"
    return roles


def _score_fold(run: Path, fold: int, truth):
    """The test metrics of a fold's run, and its test rows' predictions (row, fold, target, prediction, prob_...)."""
    import pandas as pd

    from dltrain.inference import output_columns, score

    scored = score(run, "test")
    rows = scored.rows.rows
    frame = pd.DataFrame({"row": rows, "fold": fold, "target": truth.iloc[rows].to_numpy()})
    for name, values in output_columns(scored.loaded, scored.seen.outputs).items():
        frame[name] = values
    return dict(scored.metrics), frame


def summarize(per_fold: list[dict]) -> dict[str, dict]:
    """Each metric's mean and standard deviation across folds (the sample's: ddof 1), and each fold's value."""
    names = [name for name in per_fold[0] if all(name in m for m in per_fold)]
    out = {}
    for name in names:
        values = [float(m[name]) for m in per_fold]
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else math.nan
        out[name] = {"mean": mean, "std": std, "folds": values}
    return out

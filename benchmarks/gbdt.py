"""Tables against gradient boosting: `dltrain init` -> `fit` -> `evaluate` with the config exactly as
init wrote it, against scikit-learn's HistGradientBoosting (defaults) and a linear model trained on
exactly the same training rows and scored on the same test rows.

    python -m benchmarks.gbdt [--seeds 3] [--only NAME,...] [--dry]

A small table gets more seeds (see seeds_for), so that one test row is not points of accuracy.

The tables: the shipped ones (iris, penguins, breast cancer, diabetes), scikit-learn's bundled ones
(wine, digits: no download), and generated ones with a known structure, each built to have one of
the properties that make a network lose to trees (skewed and heavy-tailed inputs, a skewed
regression target, rare classes, few noisy rows, dates, a periodic signal). The rows of each split
come from the run's own data.json, so the comparison is on the same rows; scikit-learn trains on
the train and validation rows together (its own early stopping, when on, splits them again).
Scores: accuracy for classes, R² for numbers; each the mean over the seeds (the table's seed and
the config's). Writes benchmarks/RESULTS-gbdt.md and the README's block (not with --dry).
scikit-learn is needed (the dev and bench extras).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import into_readme, machine

ROOT = Path(__file__).resolve().parent.parent


# ----- the tables: name -> (a function of the seed giving the table, its target, what it tests)


def _shipped(name: str) -> Callable[[int], pd.DataFrame]:
    return lambda seed: pd.read_csv(ROOT / "data" / f"{name}.csv")


def _sklearn(loader: str, target: str) -> Callable[[int], pd.DataFrame]:
    def make(seed: int) -> pd.DataFrame:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)(as_frame=True)
        frame = bunch.frame.copy()
        frame = frame.rename(columns={"target": target})
        if loader == "load_wine" or loader == "load_digits":
            frame[target] = [f"c{v}" for v in frame[target]]
        return frame

    return make


def _skewed_inputs(seed: int) -> pd.DataFrame:
    """Lognormal measurements whose logs carry the signal (as incomes, areas, concentrations)."""
    rng = np.random.default_rng(seed)
    n = 3000
    a, b, c = (rng.lognormal(0, s, n) for s in (1.0, 1.5, 0.7))
    counts = rng.negative_binomial(1, 0.002, n).astype(float)  # heavy-tailed counts up to thousands
    y = np.log(a) - 0.6 * np.log(b) + 0.4 * np.log1p(counts) + rng.normal(0, 0.4, n)
    return pd.DataFrame({"a": a.round(4), "b": b.round(4), "c": c.round(4), "count": counts, "y": y.round(4)})


def _skewed_target(seed: int) -> pd.DataFrame:
    """A price-like target: exp of a linear function of the inputs (a long right tail)."""
    rng = np.random.default_rng(seed)
    n = 2500
    x = rng.normal(size=(n, 6))
    y = np.exp(0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3] + rng.normal(0, 0.25, n))
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(6)])
    frame["price"] = (100 * y).round(2)
    return frame


def _rare_classes(seed: int) -> pd.DataFrame:
    """Five classes, two of them rare (2% and 4%), from scikit-learn's make_classification."""
    from sklearn.datasets import make_classification

    x, y = make_classification(4000, 12, n_informative=8, n_classes=5, n_clusters_per_class=1, weights=[0.5, 0.26, 0.18, 0.04, 0.02], random_state=seed)
    frame = pd.DataFrame(x.round(4), columns=[f"f{i}" for i in range(12)])
    frame["kind"] = np.array(["common", "usual", "often", "rare", "scarce"])[y]
    return frame


def _few_rows(seed: int) -> pd.DataFrame:
    """400 noisy rows, a binary target, a few categories and a missing value here and there."""
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=(n, 5))
    colour = rng.choice(["red", "green", "blue"], n)
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.5 * (colour == "red") + rng.logistic(0, 1, n) * 0.8
    frame = pd.DataFrame(x.round(3), columns=[f"m{i}" for i in range(5)])
    frame["colour"] = colour
    frame.loc[rng.random(n) < 0.05, "m2"] = np.nan
    frame["bought"] = np.where(logit > 0.3, "yes", "no")
    return frame


def _friedman(seed: int) -> pd.DataFrame:
    """Friedman #1: sin(pi x0 x1) + (x2 - .5)^2 + x3 + x4 + noise, with five useless inputs."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(2000, 10, noise=1.0, random_state=seed)
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(10)])
    frame["y"] = y.round(4)
    return frame


def _heavy_tailed_classes(seed: int) -> pd.DataFrame:
    """Three classes told apart by counts that run from 0 to tens of thousands beside small numbers."""
    rng = np.random.default_rng(seed)
    n = 3000
    visits = rng.pareto(1.2, n) * 20
    spend = rng.pareto(1.5, n) * 300
    age = rng.normal(40, 12, n)
    score = np.log1p(visits) - 0.7 * np.log1p(spend) + 0.03 * (age - 40) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"visits": visits.round(1), "spend": spend.round(2), "age": age.round(0)})
    frame["segment"] = np.array(["low", "mid", "high"])[np.digitize(score, np.quantile(score, [0.33, 0.66]))]
    return frame


def _dates(seed: int) -> pd.DataFrame:
    """Daily sales with a yearly season, a weekly cycle and a trend, from a date column."""
    rng = np.random.default_rng(seed)
    n = 2500
    days = pd.Timestamp("2012-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D")
    store = rng.choice(["north", "south", "east"], n)
    y = 3 * np.sin(2 * np.pi * days.day_of_year / 366) + 1.0 * (days.day_of_week >= 5) + 0.3 * (days.year - 2012) + 0.8 * (store == "north") + rng.normal(0, 0.5, n)
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "store": store, "sales": y.round(3)})


TABLES: dict[str, tuple[Callable[[int], pd.DataFrame], str, str]] = {
    "iris": (_shipped("iris"), "species", "shipped, 150 rows, 3 classes"),
    "penguins": (_shipped("penguins"), "species", "shipped, 344 rows, categories and gaps"),
    "breast_cancer": (_shipped("breast_cancer"), "diagnosis", "shipped, 569 rows, 30 measurements"),
    "diabetes": (_shipped("diabetes"), "progression", "shipped, 442 rows, regression"),
    "wine": (_sklearn("load_wine", "cultivar"), "cultivar", "scikit-learn's, 178 rows, 3 classes"),
    "digits": (_sklearn("load_digits", "digit"), "digit", "scikit-learn's, 1,797 rows, 64 pixels, 10 classes"),
    "skewed_inputs": (_skewed_inputs, "y", "lognormal and heavy-tailed inputs, regression"),
    "skewed_target": (_skewed_target, "price", "a long-tailed regression target"),
    "rare_classes": (_rare_classes, "kind", "5 classes, two of 2% and 4%"),
    "few_rows": (_few_rows, "bought", "400 noisy rows, binary"),
    "friedman": (_friedman, "y", "Friedman #1, 2,000 rows, regression"),
    "heavy_tailed": (_heavy_tailed_classes, "segment", "Pareto counts, 3 classes"),
    "dates": (_dates, "sales", "a date column with a season and a week, regression"),
}


# ----- one comparison


def _dltrain(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dltrain", *map(str, args)], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), **_env()})


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _sklearn_frame(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Inputs as HistGradientBoosting takes them: numbers, categories as pandas categoricals, a date as its ordinal day."""
    from dltrain.data.dates import looks_like_dates, parse_dates

    x = frame.drop(columns=[target]).copy()
    for column in x.columns:
        series = x[column]
        if pd.api.types.is_numeric_dtype(series):
            continue
        if looks_like_dates(series):
            stamps = parse_dates(series)
            x[column] = (stamps - pd.Timestamp("1970-01-01")).dt.days.astype(float)
            x[column + "_dayofyear"] = stamps.dt.day_of_year.astype(float)
            x[column + "_weekday"] = stamps.dt.day_of_week.astype(float)
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        if numbers.notna().mean() > 0.95:
            x[column] = numbers
        else:
            x[column] = series.astype("category")
    return x, frame[target]


def _scores(frame: pd.DataFrame, target: str, indices: dict, classes: bool, seed: int) -> dict[str, float]:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = _sklearn_frame(frame, target)
    fit_rows = np.concatenate([indices["train"], indices.get("val", [])]).astype(int)
    test_rows = np.asarray(indices["test"], dtype=int)
    known = y.notna().to_numpy()
    fit_rows, test_rows = fit_rows[known[fit_rows]], test_rows[known[test_rows]]
    trees = (HistGradientBoostingClassifier if classes else HistGradientBoostingRegressor)(categorical_features="from_dtype", random_state=seed)
    trees.fit(x.iloc[fit_rows], y.iloc[fit_rows])
    numeric = [c for c in x.columns if not isinstance(x[c].dtype, pd.CategoricalDtype)]
    categorical = [c for c in x.columns if c not in numeric]
    prepare = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), categorical),
    )
    linear = make_pipeline(prepare, LogisticRegression(max_iter=2000) if classes else RidgeCV())
    linear.fit(x.iloc[fit_rows], y.iloc[fit_rows])
    score = accuracy_score if classes else r2_score
    return {
        "gbdt": float(score(y.iloc[test_rows], trees.predict(x.iloc[test_rows]))),
        "linear": float(score(y.iloc[test_rows], linear.predict(x.iloc[test_rows]))),
    }


def compare(name: str, seed: int, work: Path) -> dict:
    make, target, _ = TABLES[name]
    folder = work / f"{name}-{seed}"
    folder.mkdir(parents=True)
    frame = make(seed)
    frame.to_csv(folder / "table.csv", index=False)
    made = _dltrain("init", "table.csv", "--target", target, "-o", "config.yaml", cwd=folder)
    if made.returncode != 0:
        raise RuntimeError(f"{name}: init failed: {made.stderr}")
    start = time.perf_counter()
    fitted = _dltrain("fit", "config.yaml", f"seed={seed}", "--out", "run", cwd=folder)
    seconds = time.perf_counter() - start
    if fitted.returncode != 0:
        raise RuntimeError(f"{name}: fit failed: {fitted.stderr[-2000:]}")
    evaluated = _dltrain("evaluate", "run", "--json", cwd=folder)
    metrics = json.loads(evaluated.stdout)["metrics"]
    classes = "accuracy" in metrics
    indices = json.loads((folder / "run" / "data.json").read_text())["indices"]
    found = _scores(frame, target, indices, classes, seed)
    found["dltrain"] = float(metrics["accuracy" if classes else "r2"])
    found["metric"] = "accuracy" if classes else "R²"
    found["seconds"] = seconds
    found["test_rows"] = len(indices["test"])
    found["config"] = (folder / "config.yaml").read_text()
    return found


# A small table's test split holds a few rows (iris: 15, one row is 6.7 points): such a table gets
# more seeds, up to MAX_SEEDS, until the seeds' test splits hold MIN_TEST_ROWS rows in all.
MIN_TEST_ROWS = 150
MAX_SEEDS = 10


def seeds_for(test_rows: int, seeds: int) -> int:
    return min(MAX_SEEDS, max(seeds, -(-MIN_TEST_ROWS // max(test_rows, 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated table names")
    parser.add_argument("--dry", action="store_true", help="print, write no file")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(TABLES)
    work = Path(tempfile.mkdtemp(prefix="dltrain-gbdt-")) if args.keep is None else args.keep
    rows = []
    try:
        for name in names:
            found = [compare(name, 0, work)]
            found += [compare(name, seed, work) for seed in range(1, seeds_for(found[0]["test_rows"], args.seeds))]
            mean = {key: float(np.mean([f[key] for f in found])) for key in ("dltrain", "gbdt", "linear", "seconds")}
            gaps = [f["dltrain"] - f["gbdt"] for f in found]
            mean["seeds"], mean["test_rows"] = len(found), sum(f["test_rows"] for f in found)
            mean["error"] = float(np.std(gaps, ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else float("nan")
            rows.append((name, found[0]["metric"], mean))
            print(
                f"{name:15s} {found[0]['metric']:8s} dltrain {mean['dltrain']:.3f}  gbdt {mean['gbdt']:.3f}  linear {mean['linear']:.3f}  "
                f"({len(found)} seeds, {mean['seconds']:.0f} s a fit)",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    gaps = [m["dltrain"] - m["gbdt"] for _, _, m in rows]
    lines = [
        f"`dltrain init` -> `fit` -> `evaluate` against scikit-learn on the same rows, the config as init wrote it; the mean over "
        f"{args.seeds} seeds, or more for a small table, until the test splits hold {MIN_TEST_ROWS} rows in all (at most {MAX_SEEDS}); "
        "± is the standard error of the difference over the seeds. `python -m benchmarks.gbdt`.",
        "",
        "| table | what it is | seeds (test rows) | metric | dltrain | HistGradientBoosting | linear | dltrain - GBDT |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (name, metric, mean), gap in zip(rows, gaps):
        lines.append(
            f"| {name} | {TABLES[name][2]} | {mean['seeds']} ({mean['test_rows']:,}) | {metric} | {mean['dltrain']:.3f} | {mean['gbdt']:.3f} | "
            f"{mean['linear']:.3f} | {gap:+.3f} ± {mean['error']:.3f} |"
        )
    within = sum(g >= -0.02 for g in gaps)
    lines += [
        "",
        f"Within 2 points of gradient boosting or ahead: {within} of {len(gaps)}; mean difference {np.mean(gaps):+.3f}. Machine: {machine()}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.dry:
        (ROOT / "benchmarks" / "RESULTS-gbdt.md").write_text("# Tables against gradient boosting\n\n" + text)
        into_readme(ROOT / "README.md", "gbdt", text)


if __name__ == "__main__":
    main()

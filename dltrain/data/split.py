"""Train / validation / test splits: by ratios (stratified for classes, seeded), or by a column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dltrain.console import warn
from dltrain.errors import DataError

SPLITS = ("train", "val", "test")


def split_by_ratios(
    n_rows: int, ratios: dict[str, float], seed: int, strata: pd.Series | None = None
) -> dict[str, np.ndarray]:
    """Row indices per split. With `strata` (the class of each row) every class is divided alike.

    Each group of rows is shuffled with `seed`, then cut by largest remainder, so each class's
    counts are within one row of the ratios; rows left over after the whole parts go where the
    split's total is furthest below its share, so the totals stay within one row as well. A class
    too small for every split goes to train first.
    """
    rng = np.random.default_rng(seed)
    names = [s for s in SPLITS if ratios.get(s, 0) > 0]
    shares = [ratios[s] for s in names]
    groups = [("", np.arange(n_rows))] if strata is None else _groups(strata)
    totals = _largest_remainder(n_rows, shares, [0] * len(names))
    assigned = [0] * len(names)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in names}
    short: list[str] = []
    for label, rows in groups:
        rows = rng.permutation(rows)
        deficit = [t - a for t, a in zip(totals, assigned)]
        counts = _largest_remainder(len(rows), shares, deficit)
        start = 0
        for i, (split, count) in enumerate(zip(names, counts)):
            parts[split].append(rows[start : start + count])
            start += count
            assigned[i] += count
        if strata is not None and any(c == 0 for c in counts):
            short.append(f"'{label}' ({len(rows)} rows)")
    if short:
        warn(
            f"class {', '.join(short)} too small to appear in every split: its rows went to "
            "train first; metrics on the other splits may be undefined"
        )
    return {s: np.sort(np.concatenate(parts[s])) for s in names}


def _groups(strata: pd.Series) -> list[tuple[str, np.ndarray]]:
    codes, labels = pd.factorize(strata.to_numpy(), sort=True)
    return [(str(label), np.flatnonzero(codes == i)) for i, label in enumerate(labels)]


def _largest_remainder(total: int, ratios: list[float], deficit: list[int]) -> list[int]:
    """Whole counts summing to `total`, each within one of total x ratio.

    Leftover rows go to the largest fractions; equal fractions to the split with the largest
    `deficit` (rows it still lacks overall), then to the earlier split (train first).
    """
    quotas = [total * r for r in ratios]
    counts = [int(q + 1e-9) for q in quotas]
    order = sorted(range(len(ratios)), key=lambda i: (-round(quotas[i] - counts[i], 9), -deficit[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def split_by_column(values: pd.Series, column: str) -> dict[str, np.ndarray]:
    """Rows whose `column` says train, val or test (case and spaces ignored; `validation` is val)."""
    text = values.astype("string").str.strip().str.lower().replace({"validation": "val", "valid": "val"})
    bad = ~text.isin(SPLITS) | text.isna()
    if bad.any():
        found = ", ".join(repr(v) for v in values[bad].astype(str).unique()[:5])
        raise DataError(
            f"split column '{column}' must hold train, val or test; {int(bad.sum())} row(s) hold {found}",
            key=("data", "split", "column"),
        )
    result = {s: np.flatnonzero((text == s).to_numpy()) for s in SPLITS}
    if len(result["train"]) == 0:
        raise DataError(f"split column '{column}' marks no row as train", key=("data", "split", "column"))
    return {s: rows for s, rows in result.items() if len(rows) or s == "train"}

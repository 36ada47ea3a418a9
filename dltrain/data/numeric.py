"""Numeric columns beyond standardization: transforms (log, quantile) and encodings (piecewise
linear, periodic), the math of `NumericEncoder`'s options.

Fitting needs more than sums here (quantiles, the minimum before a log), so the training values
are kept as a bounded sample: every value while there are at most `SAMPLE_SIZE`, else a uniform
sample of that many. Each value's place in the sample is decided by a hash of its position among
the training values, never by a random generator's state, so fitting chunk by chunk (a streamed
table) keeps exactly the values that fitting the whole column at once keeps.
"""

from __future__ import annotations

import zlib

import numpy as np

SAMPLE_SIZE = 100_000  # training values kept per column for quantiles and log statistics
QUANTILES = 256  # the most quantiles `transform: quantile` maps through
BOUND = 1e-7  # quantile levels are kept inside (BOUND, 1 - BOUND): normal scores within about ±5.2

TRANSFORMS = ("log", "quantile")
ENCODINGS = {"piecewise_linear": {"bins": 16}, "periodic": {"frequencies": 8, "sigma": 1.0}}


def check_transform(key: str, value) -> str | None:
    if value is not None and value not in TRANSFORMS:
        return f"{key} is one of {', '.join(TRANSFORMS)}; found {value!r}"
    return None


def check_encoding(value) -> str | None:
    """A message when `encoding` is not `{type: piecewise_linear, bins: N}` or `{type: periodic, frequencies: N, sigma: S}`."""
    if value is None:
        return None
    accepted = "{type: piecewise_linear, bins: 16} or {type: periodic, frequencies: 8, sigma: 1.0}"
    kind = value.get("type") if isinstance(value, dict) else value
    if not isinstance(kind, str) or kind not in ENCODINGS:
        return f"encoding is {accepted} (or the type's name alone); found {value!r}"
    settings = value if isinstance(value, dict) else {}
    for key in settings:
        if key != "type" and key not in ENCODINGS[kind]:
            return f"encoding {kind} has no key '{key}'; its keys: {', '.join(ENCODINGS[kind])}"
    for key in ("bins", "frequencies"):
        if key in settings:
            count = settings[key]
            least = 2 if key == "bins" else 1
            if not isinstance(count, int) or isinstance(count, bool) or count < least:
                return f"encoding {kind}: {key} is a whole number of at least {least}; found {count!r}"
    sigma = settings.get("sigma")
    if sigma is not None and (not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0):
        return f"encoding periodic: sigma is a number above 0; found {sigma!r}"
    return None


def encoding_settings(value) -> dict:
    """`encoding` as written (a name, or a mapping), with its defaults filled."""
    kind = value["type"] if isinstance(value, dict) else value
    return {"type": kind, **ENCODINGS[kind], **({k: v for k, v in value.items() if k != "type"} if isinstance(value, dict) else {})}


# the bounded sample


def sample_state() -> dict:
    return {"seen": 0, "values": np.empty(0), "keys": np.empty(0, dtype=np.uint64), "min": np.inf, "max": -np.inf}


def sample_update(state: dict, values: np.ndarray) -> None:
    """Add the next training values (no missing ones); keeps the `SAMPLE_SIZE` of smallest hash."""
    if not len(values):
        return
    keys = _hash(np.arange(state["seen"], state["seen"] + len(values), dtype=np.uint64))
    state["seen"] += len(values)
    state["min"] = min(state["min"], float(values.min()))
    state["max"] = max(state["max"], float(values.max()))
    kept = np.concatenate([state["values"], values])
    kept_keys = np.concatenate([state["keys"], keys])
    if len(kept) > SAMPLE_SIZE:
        chosen = np.argpartition(kept_keys, SAMPLE_SIZE - 1)[:SAMPLE_SIZE]
        kept, kept_keys = kept[chosen], kept_keys[chosen]
    state["values"], state["keys"] = kept, kept_keys


def sample_values(state: dict) -> np.ndarray:
    """The sample, sorted (so that what follows does not depend on the order values came in)."""
    return np.sort(state["values"])


def _hash(n: np.ndarray) -> np.ndarray:
    """splitmix64 of each position: a fixed, uniform-looking priority for each training value."""
    with np.errstate(over="ignore"):
        z = n + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


# transforms


def log_shift(minimum: float) -> float:
    """What is added before log1p: nothing for a column without negative values (log1p(x)), else
    minus its training minimum, which then maps to 0 (log1p(x - min))."""
    return 0.0 if minimum >= 0 else -minimum


def log_values(values: np.ndarray, minimum: float, shift: float) -> np.ndarray:
    """log1p(x + shift), values below the training minimum taken as it; NaN stays NaN."""
    return np.log1p(np.maximum(values, minimum) + shift)


def fit_quantiles(sample: np.ndarray) -> list[float]:
    """The training values at `QUANTILES` (or fewer, for fewer values) evenly spaced levels."""
    count = min(QUANTILES, len(sample))
    if count == 0:
        return [0.0, 0.0]
    return [float(q) for q in np.quantile(sample, np.linspace(0, 1, max(count, 2)))]


def normal_scores(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Each value's level among the training quantiles, as a standard normal score (sklearn's
    QuantileTransformer with output_distribution='normal'); NaN stays NaN."""
    q = np.asarray(quantiles, dtype="float64")
    levels = np.linspace(0, 1, len(q))
    # a value repeated across several quantiles sits in the middle of them, from both sides
    up = np.interp(values, q, levels)
    down = -np.interp(-values, -q[::-1], -levels[::-1])
    return _ndtri(np.clip(0.5 * (up + down), BOUND, 1 - BOUND))


def _ndtri(p: np.ndarray) -> np.ndarray:
    import torch

    return torch.special.ndtri(torch.from_numpy(np.ascontiguousarray(p, dtype="float64"))).numpy()


# encodings


def fit_edges(sample: np.ndarray, bins: int) -> list[float]:
    """Piecewise linear encoding's bin edges: `bins + 1` training quantiles (repeats kept, so the width is `bins`)."""
    if not len(sample):
        return [float(v) for v in np.linspace(-1, 1, bins + 1)]
    return [float(e) for e in np.quantile(sample, np.linspace(0, 1, bins + 1))]


def piecewise_linear(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """(rows, bins) in [0, 1]: bins below the value are 1, the bin holding it its share, bins above 0
    (Gorishniy et al. 2022). A bin of no width is 1 from its edge on."""
    e = np.asarray(edges, dtype="float64")
    low, high = e[:-1], e[1:]
    width = high - low
    v = values[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(width > 0, (v - low) / np.where(width > 0, width, 1.0), (v >= high).astype("float64"))
    return np.clip(share, 0.0, 1.0)


def fit_frequencies(column: str, count: int, sigma: float) -> list[float]:
    """Periodic encoding's fixed frequencies ~ N(0, sigma²), from a generator seeded by the column's name."""
    rng = np.random.default_rng(zlib.crc32(column.encode("utf-8")))
    return [float(f) for f in rng.normal(0.0, sigma, count)]


def periodic(values: np.ndarray, frequencies: list[float]) -> np.ndarray:
    """(rows, 2 * frequencies): sin and cos of 2π f x."""
    angle = 2 * np.pi * values[:, None] * np.asarray(frequencies, dtype="float64")
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)

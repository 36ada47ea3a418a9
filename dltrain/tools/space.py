"""The search space of a config's `tune:` section: read, checked, and its corners tried as `check` would.

Each entry of `tune.space` is a dotted config path (as in `KEY=VALUE`) and what it may take: a list
of choices (numbers, text, or whole mappings such as an optimizer), or a range `{low, high}` with
`log: true` or `step: N` (whole numbers when low, high and step are). Nothing here needs Optuna:
`Dimension.suggest` takes any object with Optuna's `suggest_*` methods.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from dltrain.config import LoadedConfig, with_values
from dltrain.errors import ConfigError, DltrainError, Problem

RANGE_KEYS = ("low", "high", "log", "step")
ALL_CORNERS = 64  # up to this many combinations every corner is built; beyond, each value with the others at their first


@dataclass(frozen=True)
class Dimension:
    key: str  # as written: "optimizer.lr"
    path: tuple  # ("optimizer", "lr"), list indices as ints
    cite: tuple[str, int | None]  # the file and line of the entry
    kind: str  # float, int or choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()  # the values a choice gives
    labels: tuple = ()  # what the study stores for each choice: the value, or its YAML text for a mapping or a list

    def corners(self) -> list:
        """The values the checks build: each choice, or the lowest and highest value a range gives."""
        if self.kind == "choice":
            return list(self.choices)
        top = self.high
        if self.step is not None:  # the highest value on the grid low, low + step, ...
            top = self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step
            top = int(top) if self.kind == "int" else top
        return [self.low] if top == self.low else [self.low, top]

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.kind == "choice":
            return self.value_of(trial.suggest_categorical(self.key, list(self.labels)))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, stored: Any) -> Any:
        """The config value of what the study stored for this dimension."""
        if self.kind != "choice":
            return stored
        return self.choices[self.labels.index(stored)]

    def describe(self) -> dict:
        """What the plot and the tables need of it (tune.json)."""
        if self.kind == "choice":
            return {"kind": "choice", "labels": [str(label) for label in self.labels]}
        return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


@dataclass
class Space:
    dimensions: list[Dimension]
    metric: str  # the value the study optimizes; the trials monitor it
    metric_cite: tuple[str, int | None]
    problems: list[Problem] = field(default_factory=list)

    def assignments(self, values: list) -> list[tuple[tuple, Any, tuple[str, int | None]]]:
        """(path, value, cite) for `with_values`: each dimension's value, and the monitor. A path goes
        before the paths inside it (`optimizer` chosen whole, then `optimizer.lr` set in the choice)."""
        pairs = sorted(zip(self.dimensions, values), key=lambda pair: len(pair[0].path))
        return [(d.path, v, d.cite) for d, v in pairs] + [(("train", "monitor"), self.metric, self.metric_cite)]

    def label(self, values: list) -> str:
        return ", ".join(f"{d.key}={_show(d, v)}" for d, v in zip(self.dimensions, values))


def read_space(cfg: LoadedConfig) -> Space:
    """The dimensions of `cfg`'s tune.space, with the problems of how they are written (file:line)."""
    tune = cfg.config.tune
    problems: list[Problem] = []
    dimensions = []
    for key, value in tune.space.items():
        where = cfg.where(("tune", "space", key))
        cite = _cite(where)
        dotted = f"tune.space.{key}"
        path = tuple(int(p) if p.isdigit() else p for p in str(key).split("."))
        if not isinstance(key, str) or any(not p for p in str(key).split(".")):
            problems.append(Problem(where, dotted, "a key is a dotted config path, like optimizer.lr or model.layers.0.Linear"))
            continue
        if path[0] == "tune":
            problems.append(Problem(where, dotted, "the search cannot change the tune section itself"))
            continue
        try:
            dimensions.append(_dimension(key, path, cite, value))
        except ValueError as error:
            problems.append(Problem(where, dotted, str(error)))
    metric_path = ("tune", "metric") if tune.metric is not None else ("train", "monitor")
    metric = tune.metric or cfg.config.train.monitor
    return Space(dimensions, metric, _cite(cfg.where(metric_path)), problems)


def _cite(where: str) -> tuple[str, int | None]:
    source, _, line = where.rpartition(":")
    return (source, int(line)) if source and line.isdigit() else (where, None)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dimension(key: str, path: tuple, cite: tuple, value: Any) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise ValueError("the list of choices is empty: give at least one value, like [32, 64, 128]")
        plain = all(v is None or isinstance(v, (bool, int, float, str)) for v in value)
        labels = tuple(value) if plain else tuple(_flow(v) for v in value)
        if len(set(map(repr, labels))) != len(labels):
            raise ValueError(f"a choice is given twice: {', '.join(map(str, labels))}")
        return Dimension(key, path, cite, "choice", choices=tuple(value), labels=labels)
    if not isinstance(value, dict):
        raise ValueError(f"expected a list of choices ([32, 64]) or a range ({{low: 0.0001, high: 0.1, log: true}}), found {value!r}")
    unknown = [k for k in value if k not in RANGE_KEYS]
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' in a range; a range takes {', '.join(RANGE_KEYS)} (a list gives choices)")
    missing = [k for k in ("low", "high") if k not in value]
    if missing:
        raise ValueError(f"a range needs low and high; {' and '.join(missing)} missing")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    for name, number in (("low", low), ("high", high), *((("step", step),) if step is not None else ())):
        if not _number(number) or not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, found {number!r}")
    if not isinstance(log, bool):
        raise ValueError(f"log is true or false, found {log!r}")
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range must stay above 0 (it cannot reach or cross 0), found low {low}: give low > 0, or leave out log")
    if step is not None and step <= 0:
        raise ValueError(f"step must be above 0, found {step}")
    if log and step is not None:
        raise ValueError("give log or step, not both (values on a log scale have no fixed step)")
    whole = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    return Dimension(key, path, cite, "int" if whole else "float", low if whole else float(low), high if whole else float(high), log, step)


def _flow(value: Any) -> str:
    """A choice as one line of YAML ({type: SGD, lr: 0.01}): the label a study stores for it."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.replace("\n...\n", "").strip()


def _show(d: Dimension, value: Any) -> str:
    if d.kind == "choice":
        return str(d.labels[d.choices.index(value)])
    if d.kind == "float":
        return f"{value:.4g}"
    return str(value)


def corners(space: Space) -> list[list]:
    """Every combination of the dimensions' corner values when there are few; otherwise each
    dimension's corners in turn with the others at their first."""
    values = [d.corners() for d in space.dimensions]
    if math.prod(len(v) for v in values) <= ALL_CORNERS:
        return [list(c) for c in itertools.product(*values)]
    first = [v[0] for v in values]
    combos = [first]
    for n, options in enumerate(values):
        for option in options[1:]:
            combos.append([*first[:n], option, *first[n + 1 :]])
    return combos


def check_space(cfg: LoadedConfig, space: Space, extra: list | None = None) -> list[Problem]:
    """Build the corners of the space as `dltrain check` builds a config (plan, data, model, one
    rehearsed step): first each value of each dimension alone, so that one bad value does not hide
    another's problem; then, when those all build, their combinations (`corners`). The problems of
    all of them, each citing the tune.space entry it comes from."""
    from dltrain.build import build, rehearse
    from dltrain.data.prepare import prepare
    from dltrain.plan import make_plan

    problems: dict[tuple, Problem] = {}
    data: dict[str, Any] = {}
    monitor = [(("train", "monitor"), space.metric, space.metric_cite)]

    def attempt(values: list, shown: list) -> None:
        found: list[Problem] = []
        try:
            trial = with_values(cfg, values + monitor + list(extra or []), drop=("tune",))
            plan = make_plan(trial)
            key = data_key(plan)
            if key not in data:
                with plan.located():
                    data[key] = prepare(plan.data, plan.loss_entry.name, plan.loss_entry.form)
            rehearse(plan, build(plan, data[key]))
        except ConfigError as error:
            found = error.problems
        except DltrainError as error:
            found = [Problem(cfg.origin, "", str(error))]
        for problem in found:
            problems.setdefault((problem.where, problem.key, problem.message), _annotated(problem, shown))

    for d in space.dimensions:
        for value in d.corners():
            attempt([(d.path, value, d.cite)], [(d, value)])
    if not problems:
        for combo in corners(space):
            attempt(space.assignments(combo)[:-1], list(zip(space.dimensions, combo)))
    return list(problems.values())


def data_key(plan) -> str:
    """Trials whose data sections (and target encodings) agree share one encoded copy of the data."""
    return repr((plan.data, plan.loss_entry.name, plan.loss_entry.form))


def _annotated(problem: Problem, shown: list) -> Problem:
    values = ", ".join(f"{d.key}={_show(d, v)}" for d, v in shown)
    return Problem(problem.where, problem.key, f"{problem.message} (where tune.space gives {values})")


def fingerprint(cfg: LoadedConfig) -> str:
    """What a study's trials depend on: the config and its overrides, less how many trials to run and for how long."""
    raw = json.loads(json.dumps(cfg.raw, default=str))
    tune = raw.get("tune") or {}
    for key in ("trials", "timeout"):
        tune.pop(key, None)
    return json.dumps(raw, sort_keys=True)

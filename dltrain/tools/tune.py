"""`dltrain tune`: the search a config's `tune:` section writes, on Optuna.

config (with tune:) -> the space, every corner built as `check` builds a config -> trials, each a
run directory of `fit` under runs/<name>-tune/ -> the study in Optuna's storage (SQLite in that
folder by default; any RDB url, so that several machines share one) -> trials.csv, tune.json,
best.yaml and tune.png in the folder.

Several processes work on one study: each takes the next trial while holding a lock on the folder
(so that no more trials start than asked for), records its host and process id in it, and runs it.
A trial whose process is gone (killed) is failed and queued to run again with the same values, by
the next process that looks on the same machine, or by Optuna's heartbeat from any machine.
"""

from __future__ import annotations

import gc
import inspect
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltrain.config import LoadedConfig, read_config, with_values
from dltrain.config.yaml import dump_yaml
from dltrain.console import err, note, warn, without_notes
from dltrain.errors import ConfigError, DltrainError, Problem, UsageError, first_line
from dltrain.files import write_json, write_text
from dltrain.tools.space import Space, check_space, data_key, fingerprint, read_space

HEARTBEAT = 5  # seconds between a running trial's signs of life in the storage
GRACE = 30  # seconds without one after which another machine's process takes the trial for dead
HOST = socket.gethostname()
FILES = ("trials.csv", "tune.json", "best.yaml", "tune.png", "study.db")


@dataclass
class TrialRow:
    number: int
    state: str  # complete, pruned, failed, killed, interrupted, running, waiting
    value: float  # the best monitored value it reached (nan when none)
    epochs: int | None
    params: dict[str, Any]  # dimension key -> the value the study stored (a choice's label)
    run: str | None
    note: str = ""  # why it failed, when it was pruned, what reran it


@dataclass
class TuneResult:
    folder: Path
    metric: str
    higher: bool
    trials: int  # asked for
    rows: list[TrialRow]  # best first
    best: TrialRow | None
    best_yaml: Path | None
    importances: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False


def tune(
    config: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    trials: int | None = None,
    jobs: int = 1,
    storage: str | None = None,
    worker: bool = False,
    echo: bool = True,
) -> TuneResult | None:
    """Run (or continue) the study of `config`'s tune section until it has its trials.

    `jobs`: trials at a time, as processes of their own on this machine. `storage`: an Optuna RDB
    url (default: SQLite in the tune folder). `worker`: one of those processes (no checks of the
    space, no summary). Returns the summary, or None for a worker.
    """
    cfg = read_config(config, list(overrides))
    if cfg.config is not None and cfg.config.tune is None:
        raise ConfigError([Problem(cfg.where(()), "tune", "the config has no tune section: add tune: {trials: 20, space: {optimizer.lr: {low: 1.0e-4, high: 0.1, log: true}}} (see the README's dltrain tune)")])
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, found {jobs}")
    space = read_space(cfg) if cfg.config is not None else None
    if cfg.problems:
        raise ConfigError(list(cfg.problems) + (space.problems if space else []))
    optuna = _optuna()
    settings = cfg.config.tune
    wanted = trials or settings.trials
    extra = _threads(cfg, jobs)
    if not worker:  # every corner of the space built, before the first trial; all problems together
        problems = space.problems + check_space(cfg, space, extra)
        if problems:
            raise ConfigError(problems)
    folder = Path(cfg.config.train.out_dir) / f"{cfg.name}-tune"
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    from dltrain.train.metrics import higher_is_better

    higher = higher_is_better(space.metric)
    lock = _Lock(folder / ".lock")
    with lock:  # one process makes the storage's tables and the study
        study = _study(optuna, cfg, url, storage is not None, higher, settings, wanted)
        done, _ = _counted(study)
    if worker:
        children = []
    elif done >= wanted:  # the study went past this count before (an earlier --trials 40): nothing to run
        children = []
        note(f"tune: {folder} already has {done} finished trials of the {wanted} asked for: nothing to run (--trials N above {done} goes on)")
    else:
        children = _spawn(config, overrides, wanted, jobs, url)
        note(f"tune: {wanted} trials of {cfg.name} in {folder} ({jobs} at a time), {space.metric} {'up' if higher else 'down'}; storage {_safe_url(url)}")
    stop = None
    try:
        _work(optuna, study, cfg, space, extra, folder, wanted, settings.timeout, lock, echo)
    except _Stopped as stopped:
        stop = stopped
    finally:
        if _wait(children) and stop is None:
            stop = _Stopped(signal.SIGINT)
    if worker:
        if stop is not None:
            raise TuneStopped(None, stop.signum)
        return None
    with lock:
        result = summarize(optuna, study, space, folder, wanted, higher, final=True)
    if stop is not None:
        result.interrupted = True
        raise TuneStopped(result, stop.signum)
    return result


class TuneStopped(Exception):
    """Ctrl-C or SIGTERM during a study: the trials running were saved, and run again next time;
    `result` is the summary so far (None in a worker process)."""

    def __init__(self, result: TuneResult | None, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.result, self.signum = result, signum


# ----- the study


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("dltrain tune runs on Optuna, an optional extra: pip install 'dltrain[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _threads(cfg: LoadedConfig, jobs: int) -> list:
    """With several trials at a time, each takes its share of the cores (written in its config, so
    that best.yaml trains as its trial did)."""
    if jobs == 1 or cfg.config.train.threads is not None:
        return []
    return [(("train", "threads"), max(1, (os.cpu_count() or 1) // jobs), ("command line", None))]


def _study(optuna, cfg: LoadedConfig, url: str, given: bool, higher: bool, settings, wanted: int):
    storage_kwargs: dict[str, Any] = {"heartbeat_interval": HEARTBEAT, "grace_period": GRACE}
    callback = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback"
    storage_kwargs[callback] = _rerun_stale
    if url.startswith("sqlite"):
        storage_kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # processes wait for each other's writes
    try:
        storage = optuna.storages.RDBStorage(url, **storage_kwargs)
    except Exception as error:  # a bad url, a server that does not answer, a driver not installed
        where = f"--storage {_safe_url(url)}" if given else f"the study's database {_safe_url(url)}"
        raise UsageError(f"{where}: cannot open it ({first_line(error)}). Give an Optuna storage url such as sqlite:///study.db or postgresql://user:password@host/database") from None
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        sampler=_sampler(optuna, settings.sampler, cfg.config.seed),
        pruner=_pruner(optuna, cfg, settings.pruner),
        direction="maximize" if higher else "minimize",
        load_if_exists=True,
    )
    made = fingerprint(cfg)
    known = study.user_attrs.get("dltrain")
    if known is None:
        study.set_user_attr("dltrain", made)
    elif known != made:
        raise UsageError(
            f"the study {cfg.name} in {_safe_url(url)} was made from another config (its data, model, tune.space or "
            "overrides differ), so its trials would not compare with these. Give the config a new name, another "
            "--storage, or remove the tune folder to start again"
        )
    return study


def _sampler(optuna, kind: str, seed: int):
    """TPE or random, seeded from the config's seed and each trial's number: the same trial number
    draws the same values in any process, and processes working together draw different ones."""
    base = optuna.samplers.TPESampler if kind == "tpe" else optuna.samplers.RandomSampler
    options = {"seed": seed, "constant_liar": True} if kind == "tpe" else {"seed": seed}

    class PerTrial(base):
        def before_trial(self, study, trial):
            own = (seed * 1_000_003 + trial.number) % 2**32
            for sampler in (self, getattr(self, "_random_sampler", None)):
                rng = getattr(getattr(sampler, "_rng", None), "rng", None)
                if rng is not None:
                    rng.seed(own)
            super().before_trial(study, trial)

    return PerTrial(**options)


PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}


def _pruner(optuna, cfg: LoadedConfig, spec: Any):
    path = ("tune", "pruner")
    kind, options = (spec, {}) if isinstance(spec, str) else (spec.get("type"), {k: v for k, v in spec.items() if k != "type"}) if isinstance(spec, dict) else (None, {})
    if kind not in PRUNERS:
        raise cfg.error(path, f"expected median, hyperband or none (or {{type: median, n_warmup_steps: 5}}), found {spec!r}")
    factory = getattr(optuna.pruners, PRUNERS[kind])
    try:
        return factory(**options)
    except (TypeError, ValueError) as error:
        accepted = ", ".join(p for p in inspect.signature(factory).parameters if p != "self")
        raise cfg.error(path, f"{kind}: {first_line(error)} (Optuna's {PRUNERS[kind]} takes {accepted or 'no arguments'})") from None


def _rerun_stale(study, trial) -> None:
    """Optuna found a trial without a heartbeat (its process died): the same values again."""
    _rerun(study, trial)


def _rerun(study, trial) -> None:
    study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number}, skip_if_exists=False)


def _fail_dead(optuna, study) -> None:
    """Trials of this machine whose process is gone (a kill -9, a crash): failed, and queued again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != HOST or not isinstance(pid, int) or _alive(pid):
            continue
        try:
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                _rerun(study, trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process got there first


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _counted(study) -> tuple[int, int]:
    """(trials that ended and count: complete, pruned, failed by their own error; trials running)."""
    from optuna.trial import TrialState

    done = running = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (trial.state == TrialState.FAIL and "error" in trial.user_attrs):
            done += 1
        elif trial.state == TrialState.RUNNING:
            running += 1
    return done, running


# ----- the trials


class _Stopped(Exception):
    def __init__(self, signum: int):
        self.signum = signum


class _Lock:
    """An exclusive lock on a file, held by one process at a time (fcntl), released at most once."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None

    def __exit__(self, *exc) -> None:
        self.release()


def _work(optuna, study, cfg: LoadedConfig, space: Space, extra: list, folder: Path, wanted: int, timeout: float | None, lock: _Lock, echo: bool) -> None:
    """Take trials until the study has `wanted`, or `timeout` seconds are over."""
    from dltrain.fitting import fit
    from dltrain.plan import make_plan
    from dltrain.rundir import new_run_dir
    from dltrain.train.trainer import Interrupted

    deadline = time.monotonic() + timeout if timeout else math.inf
    shared: dict[str, Any] = {}  # encoded data, by data section: trials that agree on it encode it once
    stopped: list[BaseException] = []

    def objective(trial) -> float:
        lock.release()  # the trial is in the storage now: the next process may take the next one
        started = time.monotonic()
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        try:
            values = [d.suggest(trial) for d in space.dimensions]
            run = new_run_dir(folder, f"trial-{trial.number:03d}")
            trial.set_user_attr("run", str(run.resolve()))
            loaded = with_values(cfg, space.assignments(values) + extra, drop=("tune",))
            plan = make_plan(loaded)
            key = data_key(plan)
            if key not in shared:
                shared.clear()  # one data set at a time
                from dltrain.data.prepare import prepare

                with plan.located():
                    shared[key] = prepare(plan.data, plan.loss_entry.name, plan.loss_entry.form)
            from dltrain.data.sources import redact_secrets

            trial.set_user_attr("config", redact_secrets(plan.cfg.as_run()))  # a database's password is never stored

            def watch(row: dict) -> bool:
                value = row.get(space.metric, math.nan)
                if isinstance(value, float) and math.isfinite(value):
                    trial.report(value, row["epoch"])
                return trial.should_prune()

            with without_notes():
                result = fit(loaded, out=run, progress=False, watch=watch, data=shared[key], curves=False)
            value = result.best.get(space.metric, math.nan)
            trial.set_user_attr("epochs", len(result.history))
            trial.set_user_attr("best", value if isinstance(value, float) and math.isfinite(value) else None)
            trial.set_user_attr("seconds", round(time.monotonic() - started, 2))
            if result.pruned:
                _say(echo, trial.number, "pruned", value, len(result.history), space.label(values), space.metric)
                raise optuna.TrialPruned()
            if not (isinstance(value, float) and math.isfinite(value)):
                raise DltrainError(f"{space.metric} was never a finite number in {len(result.history)} epochs")
            _say(echo, trial.number, "complete", value, len(result.history), space.label(values), space.metric)
            return value
        except optuna.TrialPruned:
            raise
        except Interrupted as error:
            trial.set_user_attr("interrupted", error.signum)
            stopped.append(error)
            raise
        except Exception as error:  # a failed trial is recorded with its reason; the study goes on
            reason = first_line(error) if isinstance(error, DltrainError) else f"{type(error).__name__}: {first_line(error)}"
            trial.set_user_attr("error", reason[:500])
            trial.set_user_attr("seconds", round(time.monotonic() - started, 2))
            _say(echo, trial.number, "failed", math.nan, None, reason, space.metric)
            raise
        finally:
            gc.unfreeze()  # a fit freezes what it built (dltrain.memory); a trial's leftovers are garbage now

    while True:
        try:
            with lock:
                _fail_dead(optuna, study)
                optuna.storages.fail_stale_trials(study)
                done, running = _counted(study)
                if done + running >= wanted or time.monotonic() > deadline:
                    break
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            with lock:
                summarize(optuna, study, space, folder, wanted, None)
        except KeyboardInterrupt:
            stopped.append(KeyboardInterrupt())
        if stopped:
            _requeue_interrupted(study)
            raise _Stopped(getattr(stopped[0], "signum", signal.SIGINT))


def _requeue_interrupted(study) -> None:
    """The trials this process was running when it was stopped: run again, with their values, next time."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.user_attrs.get("pid") == os.getpid() and trial.user_attrs.get("host") == HOST and "error" not in trial.user_attrs:
            if not any(t.user_attrs.get("rerun_of") == trial.number for t in study.get_trials(deepcopy=False)):
                _rerun(study, trial)


def _say(echo: bool, number: int, state: str, value: float, epochs: int | None, what: str, metric: str) -> None:
    if not echo:
        return
    shown = f", {metric} {value:.6g}" if isinstance(value, float) and math.isfinite(value) else ""
    ran = f" after {epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    err().print(f"trial {number}: {state}{ran}{shown}: {what}", markup=False, highlight=False)


# ----- processes of their own


def _spawn(config, overrides, wanted: int, jobs: int, url: str) -> list[subprocess.Popen]:
    """`jobs - 1` more processes on the same study (this one is the first)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "dltrain", "tune", str(config), *overrides, "--trials", str(wanted), "--jobs", str(jobs), "--storage", url, "--worker"]
    return [subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env) for _ in range(jobs - 1)]


def _wait(children: list[subprocess.Popen]) -> bool:
    """Wait for the other processes; True when one was stopped by a signal."""
    stopped = False
    for child in children:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
                stopped = True
        stopped = stopped or code in (130, 143)
    return stopped


# ----- what the study leaves


def summarize(optuna, study, space: Space, folder: Path, wanted: int, higher: bool | None, final: bool = False) -> TuneResult:
    """trials.csv and tune.json now; with `final` also best.yaml, the importances and tune.png."""
    from optuna.trial import TrialState

    higher = study.direction == optuna.study.StudyDirection.MAXIMIZE if higher is None else higher
    trials = study.get_trials(deepcopy=False)
    reruns = {t.user_attrs.get("rerun_of"): t.number for t in trials if t.user_attrs.get("rerun_of") is not None}
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        state = trial.state.name.lower()
        note_text = ""
        if trial.state == TrialState.FAIL:
            if "error" in attrs:
                state, note_text = "failed", attrs["error"]
            else:
                state = "interrupted" if "interrupted" in attrs else "killed"
                note_text = f"ran again as trial {reruns[trial.number]}" if trial.number in reruns else "to run again"
        if attrs.get("rerun_of") is not None:
            note_text = (note_text + "; " if note_text else "") + f"rerun of trial {attrs['rerun_of']}"
        value = trial.value if trial.state == TrialState.COMPLETE else attrs.get("best")
        params = {d.key: trial.params[d.key] for d in space.dimensions if d.key in trial.params}
        rows.append(TrialRow(trial.number, state, float(value) if value is not None else math.nan, attrs.get("epochs"), params, attrs.get("run"), note_text))
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4, "interrupted": 5, "killed": 6}

    def rank(row: TrialRow):
        finite = math.isfinite(row.value)
        return (order.get(row.state, 9), not finite, (-row.value if higher else row.value) if finite else 0, row.number)

    rows.sort(key=rank)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_trial = (max if higher else min)(complete, key=lambda t: t.value) if complete else None
    best = next((r for r in rows if best_trial is not None and r.number == best_trial.number), None)
    result = TuneResult(folder, space.metric, higher, wanted, rows, best, None)
    if final:
        if best_trial is not None and "config" in best_trial.user_attrs:
            result.best_yaml = _write_best(folder, best_trial, space)
        if len(complete) >= 2:
            try:
                result.importances = dict(optuna.importance.get_param_importances(study))
            except Exception as error:  # too few distinct trials, say: the rest stands without them
                warn(f"no parameter importances: {first_line(error)}")
    _write_trials(folder, rows, space)
    write_json(
        folder / "tune.json",
        {
            "name": study.study_name,
            "metric": space.metric,
            "direction": "maximize" if higher else "minimize",
            "trials": wanted,
            "ended": sum(r.state in ("complete", "pruned", "failed") for r in rows),
            "best": None if best is None else {"number": best.number, "value": best.value, "run": best.run, "params": best.params, "epochs": best.epochs},
            "importances": result.importances,
            "space": {d.key: d.describe() for d in space.dimensions},
        },
    )
    if final and rows:
        from dltrain.tools.plot import leave_curves

        leave_curves(folder, higher)  # tune.png, drawn by a process of its own
    return result


def _write_trials(folder: Path, rows: list[TrialRow], space: Space) -> None:
    import csv
    import io

    out = io.StringIO()
    keys = [d.key for d in space.dimensions]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "state", space.metric, "epochs", *keys, "run", "note"])
    for row in sorted(rows, key=lambda r: r.number):
        value = "" if math.isnan(row.value) else repr(row.value)
        writer.writerow([row.number, row.state, value, row.epochs if row.epochs is not None else "", *(row.params.get(k, "") for k in keys), row.run or "", row.note])
    write_text(folder / "trials.csv", out.getvalue(), sync=False)


def _write_best(folder: Path, trial, space: Space) -> Path:
    config = dict(trial.user_attrs["config"])
    config["name"] = f"{config.get('name', 'run')}-best"
    values = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    head = (
        f"# The best trial of {folder} (trial {trial.number}: {space.metric} {trial.value:.6g}), as it ran: {values}.\n"
        f"# Train it again with: dltrain fit {folder / 'best.yaml'}\n"
    )
    path = folder / "best.yaml"
    write_text(path, head + dump_yaml(config))
    return path


def _safe_url(url: str) -> str:
    """A storage url without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url

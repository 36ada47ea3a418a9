"""dltrain tune: the space checked before any trial, trials as run directories, pruning, failures,
the best trial's config trained again to the same value, several processes on one SQLite study."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import IRIS, ROOT, iris_config

pytest.importorskip("optuna")

IRIS_TUNE = IRIS.replace("    - ReLU\n", "    - ReLU\n    - Dropout: 0.0\n").replace("lr: 0.01", "lr: 0.001").replace("epochs: 3", "epochs: 6") + """\
tune:
  trials: 8
  pruner: {type: median, n_startup_trials: 2}
  space:
    optimizer: [{type: Adam}, {type: SGD, momentum: 0.9}]
    optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}
    model.layers.0.Linear: [4, 16, 32]
    model.layers.2.Dropout: {low: 0.0, high: 0.5}
"""


def _config(folder: Path, text: str = IRIS_TUNE) -> Path:
    return iris_config(folder, text)


def test_a_study_runs_its_trials_and_best_yaml_trains_to_the_same_value(tmp_path, monkeypatch):
    from dltrain.fitting import fit
    from dltrain.tools.tune import tune

    monkeypatch.chdir(tmp_path)
    result = tune(_config(tmp_path), echo=False)
    folder = tmp_path / "runs" / "iris-tune"
    assert result.folder == Path("runs/iris-tune") and len(result.rows) == 8
    states = [r.state for r in result.rows]
    assert set(states) <= {"complete", "pruned"} and "pruned" in states and states.count("complete") >= 2
    for row in result.rows:  # each trial a run directory of its own, with what a fit leaves
        run = Path(row.run)
        assert run.parent == folder.resolve() and (run / "metrics.csv").is_file() and (run / "last.pt").is_file()
        assert len(pd.read_csv(run / "metrics.csv")) == row.epochs
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert "tune" not in saved and saved["model"]["layers"][0]["Linear"] == row.params["model.layers.0.Linear"]
        assert saved["optimizer"]["type"] in ("Adam", "SGD") and math.isclose(saved["optimizer"]["lr"], row.params["optimizer.lr"])  # lr set inside the chosen optimizer
    pruned = [r for r in result.rows if r.state == "pruned"]
    assert all(r.epochs < 6 for r in pruned)
    complete = [r.value for r in result.rows if r.state == "complete"]
    assert result.best.value == min(complete) and result.rows[0].number == result.best.number  # best first (val_loss: lower)
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials["trial"]) == list(range(8)) and set(trials.columns) >= {"state", "val_loss", "epochs", "optimizer.lr", "optimizer"}
    summary = json.loads((folder / "tune.json").read_text())
    assert summary["best"]["number"] == result.best.number and set(summary["importances"]) == set(summary["space"])
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert "tune" not in best and best["name"] == "iris-best"
    again = fit(folder / "best.yaml", progress=False, curves=False)  # a fresh fit of the plain config
    assert abs(again.best["val_loss"] - result.best.value) <= 1e-6


def test_the_runs_table_and_the_plot_know_a_study(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from dltrain.tools.plot import plot
    from dltrain.tools.runs import list_runs
    from dltrain.tools.tune import tune

    monkeypatch.chdir(tmp_path)
    result = tune(_config(tmp_path, IRIS_TUNE.replace("trials: 8", "trials: 3")), echo=False)
    rows = list_runs("runs")
    study = next(r for r in rows if r.trials is not None)
    assert study.name == "iris-tune" and study.trials == 3 and study.best == result.best.value and study.best_epoch == result.best.number
    drawn = plot(["runs/iris-tune"])
    assert drawn.path == Path("runs/iris-tune/tune.png") and drawn.path.read_bytes()[:4] == b"\x89PNG"


def test_a_failed_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    import dltrain.fitting
    from dltrain.errors import TrainingError
    from dltrain.tools.tune import tune

    real = dltrain.fitting.fit

    def fit(config, *args, **kwargs):  # a loss that turns nan at high rates, as it would on real data
        if config.raw["optimizer"]["lr"] > 0.01:
            raise TrainingError("the training loss is nan in epoch 1")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(dltrain.fitting, "fit", fit)
    monkeypatch.chdir(tmp_path)
    text = IRIS_TUNE.replace("trials: 8", "trials: 6").replace("pruner: {type: median, n_startup_trials: 2}", "pruner: none")
    result = tune(_config(tmp_path, text), echo=False)
    failed = [r for r in result.rows if r.state == "failed"]
    assert failed and all(r.note == "the training loss is nan in epoch 1" for r in failed)
    assert len(result.rows) == 6 and result.best is not None and result.best.state == "complete"


def _problems(cli, folder: Path, space: str, *args: str) -> str:
    text = IRIS_TUNE.split("  space:\n")[0] + "  space:\n" + space
    result = cli("tune", str(_config(folder, text)), *args)
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_bad_spaces_are_refused_with_file_and_line_before_any_trial(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    out = _problems(
        cli,
        tmp_path,
        "    train.epoch: [2, 4]\n"  # line 22
        "    optimizer.lr: {low: 0.1, high: 0.001}\n"
        "    optimizer.momentum: {low: 0, high: 0.9, log: true}\n"
        "    model.layers.2.Dropout: []\n"
        "    model.layers.0.Linear: [0, 16]\n"
        "    model.layers.1: [ReLU, Relu]\n",
    )
    assert "6 problems" in out
    assert "config.yaml:22: train.epoch: unknown key 'epoch'. Did you mean 'epochs'?" in out
    assert "config.yaml:23: tune.space.optimizer.lr: low (0.1) is above high (0.001)" in out
    assert "config.yaml:24: tune.space.optimizer.momentum: a log range must stay above 0" in out
    assert "config.yaml:25: tune.space.model.layers.2.Dropout: the list of choices is empty" in out
    assert "config.yaml:26: model.layers.0: Linear gives (batch, 0) per row" in out and "model.layers.0.Linear=0" in out
    assert "config.yaml:27: model.layers.1: unknown layer 'Relu'" in out
    assert not (tmp_path / "runs").exists()  # nothing started


def test_combinations_of_values_are_checked_together(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    out = _problems(cli, tmp_path, "    model.layers.3: [{Linear: auto}, {Linear: 7}]\n    loss: [CrossEntropyLoss, MSELoss]\n")
    assert "config.yaml:22: model.layers.3: the model gives (batch, 7)" in out  # each value alone
    assert "config.yaml:23" in out and "loss=MSELoss" in out


def test_tune_without_a_section_resume_and_fit_resume_of_a_study(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    plain = _config(tmp_path, IRIS_TUNE.split("tune:\n")[0])
    result = cli("tune", str(plain))
    assert result.code == 2 and "config.yaml:1: tune: the config has no tune section" in result.output
    result = cli("tune", str(_config(tmp_path)), "--resume", "runs/iris-tune")
    assert result.code == 2 and "dltrain tune has no --resume: run the same command again" in result.output
    (tmp_path / "runs" / "iris-tune").mkdir(parents=True)
    (tmp_path / "runs" / "iris-tune" / "tune.json").write_text("{}")
    result = cli("fit", "--resume", "runs/iris-tune")
    assert result.code == 2 and "a tune folder, not one run" in result.output


def test_another_config_on_the_same_study_is_refused(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, IRIS_TUNE.replace("trials: 8", "trials: 1"))
    assert cli("tune", str(config)).code == 0
    result = cli("tune", str(config), "--trials", "2")  # more trials: the same study goes on
    assert result.code == 0 and "2 of 2 trials" in result.stdout
    again = cli("tune", str(config), "--jobs", "2")  # the config's 1 trial, when the study holds 2: nothing to run
    assert again.code == 0, again.output
    assert "already has 2 finished trials of the 1 asked for: nothing to run (--trials N above 2 goes on)" in again.output
    assert "2 trials (1 asked for)" in again.stdout and "trial 2:" not in again.output
    assert sorted(p.name for p in (tmp_path / "runs" / "iris-tune").glob("trial-*")) == ["trial-000", "trial-001"]
    result = cli("tune", str(config), "train.epochs=3")
    assert result.code == 2 and "was made from another config" in result.output


def test_a_missing_optuna_is_named_with_the_extra(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = cli("tune", str(_config(tmp_path)))
    assert result.code == 2 and "pip install 'dltrain[tune]'" in result.output


def _dltrain(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "dltrain", "tune", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _study(folder: Path):
    import optuna

    return optuna.load_study(study_name="iris", storage=f"sqlite:///{folder / 'runs/iris-tune/study.db'}")


def test_two_processes_share_one_study_and_a_killed_one_is_rerun(tmp_path):
    from optuna.trial import TrialState

    text = IRIS_TUNE.replace("trials: 8", "trials: 10").replace("epochs: 6", "epochs: 150")  # trials long enough to be caught running
    config = _config(tmp_path, text)
    first, second = _dltrain(str(config), cwd=tmp_path), _dltrain(str(config), cwd=tmp_path)
    end = time.monotonic() + 120
    killed = None
    while killed is None and time.monotonic() < end:  # kill the first in the middle of a trial of its own
        time.sleep(0.2)
        if not (tmp_path / "runs/iris-tune/study.db").is_file():
            continue
        try:
            running = [t for t in _study(tmp_path).get_trials(states=(TrialState.RUNNING,)) if t.user_attrs.get("pid") == first.pid]
        except Exception:  # the study not made yet
            continue
        if running and "run" in running[0].user_attrs and list(Path(running[0].user_attrs["run"]).glob("metrics.csv")):
            first.send_signal(signal.SIGKILL)
            killed = running[0].number
    assert killed is not None, "the first process never ran a trial"
    first.wait()
    assert second.wait(timeout=300) == 0
    again = _dltrain(str(config), cwd=tmp_path)  # the same command: the study goes on
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    trials = _study(tmp_path).get_trials()
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(ended) == 10
    dead = next(t for t in trials if t.number == killed)
    assert dead.state == TrialState.FAIL and "error" not in dead.user_attrs
    rerun = [t for t in trials if t.user_attrs.get("rerun_of") == killed]
    assert len(rerun) == 1 and rerun[0].params == dead.params and rerun[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    runs = [t.user_attrs["run"] for t in trials if "run" in t.user_attrs]
    assert len(runs) == len(set(runs))  # no trial ran twice in one folder
    assert {first.pid, second.pid} <= {t.user_attrs.get("pid") for t in trials}  # both processes took trials
    table = pd.read_csv(tmp_path / "runs/iris-tune/trials.csv").set_index("trial")
    assert table.loc[killed, "state"] == "killed" and table.loc[killed, "note"] == f"ran again as trial {rerun[0].number}"
    assert "10 of 10 trials" in output


def test_jobs_runs_trials_side_by_side_each_with_its_share_of_the_cores(tmp_path):
    text = IRIS_TUNE.replace("trials: 8", "trials: 6").replace("epochs: 6", "epochs: 100").replace("{type: median, n_startup_trials: 2}", "none")
    config = _config(tmp_path, text)  # trials long enough that the second process, starting later, gets some
    run = _dltrain(str(config), "--jobs", "2", cwd=tmp_path)
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    trials = _study(tmp_path).get_trials()
    assert len(trials) == 6 and len({t.user_attrs["pid"] for t in trials}) == 2
    threads = max(1, (os.cpu_count() or 1) // 2)
    for t in trials:  # written in each trial's config, so that best.yaml trains as its trial did
        assert yaml.safe_load((Path(t.user_attrs["run"]) / "config.yaml").read_text())["train"]["threads"] == threads
    assert (tmp_path / "runs/iris-tune/best.yaml").is_file()

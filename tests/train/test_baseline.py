"""evaluate's baselines: the training majority (or mean) and a linear model on the same encoded
inputs, fitted on the run's train split, on tables built so that the right answer is known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from dltrain.inference import evaluate
from dltrain.task import BINARY, CATEGORY, INDEX, NUMERIC, STANDARDIZED, ZERO_ONE, Task
from dltrain.train.baseline import constant, linear


def _config(source, tmp_path, target="y", loss="CrossEntropyLoss", layers=None, epochs=30) -> dict:
    return {
        "seed": 0,
        "data": {"source": str(source), "target": target, "batch_size": 32, "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
        "model": {"layers": layers or [{"Linear": 32}, "ReLU", {"Linear": 32}, "ReLU", {"Linear": "auto"}]},
        "loss": loss,
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": epochs, "out_dir": str(tmp_path / "runs")},
    }


@pytest.fixture(scope="module")
def rings(tmp_path_factory):
    """1,200 rows of two classes set apart by the distance from the origin: no line separates them."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, size=(1200, 2))
    radius = np.sqrt((x**2).sum(1))
    y = np.where(radius > np.median(radius), "outer", "inner")
    path = tmp_path_factory.mktemp("rings") / "rings.csv"
    pd.DataFrame(x, columns=["a", "b"]).assign(y=y).to_csv(path, index=False)
    return path


def test_a_network_beats_a_linear_model_where_no_line_separates_the_classes(rings, tmp_path, cli):
    result = dltrain.fit(_config(rings, tmp_path), progress=False)
    evaluation = evaluate(result.run_dir)
    found = {b.name: b.metrics for b in evaluation.baselines}
    assert set(found) == {"majority", "linear"}
    assert evaluation.metrics["accuracy"] > 0.9  # the network finds the circle
    assert found["linear"]["accuracy"] < 0.65  # a line cannot
    assert 0.4 < found["majority"]["accuracy"] < 0.6 and found["majority"]["balanced_accuracy"] == pytest.approx(0.5)
    saved = json.loads((result.run_dir / "evaluate_test.json").read_text())
    assert saved["baselines"]["linear"]["metrics"]["accuracy"] == pytest.approx(found["linear"]["accuracy"])
    assert "logistic regression on the same 2 encoded inputs" in saved["baselines"]["linear"]["what"]

    shown = cli("evaluate", result.run_dir)
    assert shown.code == 0
    header = next(line for line in shown.stdout.splitlines() if "metric" in line)
    assert header.split()[::2] == ["metric", "model", "majority", "linear"]  # columns beside each other
    assert "at least as well" not in shown.stdout  # the network did learn more


def test_a_linear_target_says_the_linear_model_is_as_good(tmp_path, cli):
    """A target that is a line plus noise: ridge regression reaches the noise floor, so a network
    trained a few epochs cannot beat it, and evaluate says so."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, size=(800, 5))
    y = x @ np.array([3.0, -2.0, 1.0, 0.5, 0.0]) + 100 + rng.normal(0, 0.5, size=800)
    path = tmp_path / "line.csv"
    pd.DataFrame(x, columns=list("abcde")).assign(y=y).to_csv(path, index=False)
    result = dltrain.fit(_config(path, tmp_path, loss="MSELoss", layers=[{"Linear": 8}, "ReLU", {"Linear": "auto"}], epochs=3), progress=False)
    evaluation = evaluate(result.run_dir)
    found = {b.name: b for b in evaluation.baselines}
    assert set(found) == {"mean", "linear"}
    assert found["linear"].metrics["r2"] > 0.98  # 0.5 noise on a spread of about 3.8
    assert abs(found["mean"].metrics["r2"]) < 0.05  # the training mean explains nothing
    assert "training mean" in found["mean"].what and "ridge regression" in found["linear"].what
    assert found["linear"].metrics["rmse"] == pytest.approx(0.5, abs=0.1)  # in the target's own units
    shown = cli("evaluate", result.run_dir)
    text = " ".join(shown.stdout.split())
    assert shown.code == 0 and "the linear model scores at least as well as the network (r2" in text


def test_baselines_left_out_on_request_and_when_the_training_data_is_gone(rings, tmp_path, cli):
    source = tmp_path / "copy.csv"
    shutil.copy(rings, source)
    result = dltrain.fit(_config(source, tmp_path, epochs=2), progress=False)
    assert evaluate(result.run_dir, baseline=False).baselines == []
    assert "baselines" not in json.loads((result.run_dir / "evaluate_test.json").read_text())
    assert "linear" not in cli("evaluate", result.run_dir, "--no-baseline").stdout

    labelled = tmp_path / "labelled.csv"
    shutil.move(source, labelled)  # evaluate --data needs only the run; a baseline needs its train split
    shown = cli("evaluate", result.run_dir, "--data", labelled)
    assert shown.code == 0 and "no baseline: the data this run was trained on is not here" in shown.stdout
    assert "accuracy" in shown.stdout


def test_the_majority_baseline_predicts_the_most_common_training_class():
    task = Task(CATEGORY, INDEX, "logits", ("a", "b", "c"))
    train = torch.tensor([0, 1, 1, 1, 2])
    test = torch.tensor([1, 1, 0, 2])
    found = constant(task, train, test, ("accuracy", "balanced_accuracy"), "test")
    assert found.name == "majority" and "always 'b', 60% of the training rows" == found.what
    assert found.metrics == {"accuracy": 0.5, "balanced_accuracy": pytest.approx(1 / 3)}

    binary = Task(BINARY, ZERO_ONE, "logits", ("no", "yes"), threshold=0.2)  # a model's threshold is not the baseline's
    found = constant(binary, torch.tensor([[0.0], [0.0], [1.0]]), torch.tensor([[1.0], [0.0]]), ("accuracy", "recall"), "test")
    assert found.metrics == {"accuracy": 0.5, "recall": 0.0}


def test_the_mean_and_linear_baselines_speak_the_targets_own_units():
    """A log-transformed, standardized target: the mean baseline predicts the training mean of the
    values, and the linear model's errors are in the target's units too."""
    task = Task(NUMERIC, STANDARDIZED, "values", (), mean=2.0, std=0.5, transform={"type": "log", "minimum": 0.0, "shift": 0.0})
    values = torch.tensor([1.0, 3.0, 10.0, 30.0])
    encoded = ((torch.log1p(values) - 2.0) / 0.5).reshape(-1, 1)
    found = constant(task, encoded, encoded, ("mae",), "train")
    assert "always 11, the training mean" == found.what
    assert found.metrics["mae"] == pytest.approx(float((values - 11).abs().mean()), rel=1e-5)
    many = torch.linspace(1.0, 30.0, 400)
    encoded = ((torch.log1p(many) - 2.0) / 0.5).reshape(-1, 1)
    x = encoded.double()  # the input is the encoded target itself: a perfect line
    fitted = linear(task, x, encoded, x, encoded, ("mae", "r2"), "train")
    assert fitted.metrics["r2"] > 0.999 and fitted.metrics["mae"] < 0.1


def test_a_streamed_run_gets_the_majority_but_no_linear_model(rings, tmp_path, cli):
    cfg = _config(rings, tmp_path, epochs=1)
    cfg["data"]["in_memory"] = False
    result = dltrain.fit(cfg, progress=False)
    evaluation = evaluate(result.run_dir)
    assert [b.name for b in evaluation.baselines] == ["majority"]
    assert "streams its data (data.in_memory: false)" in evaluation.baseline_note


def test_the_linear_baseline_calls_positives_by_the_models_rule():
    """A rare positive class (about 8%) that overlaps the other: at 0.5 logistic regression calls few
    rows positive. Under train.threshold auto it chooses its own threshold, the best F1 on its
    training rows, as the model does; under a fixed one it takes the model's."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(0, 1, size=(6000, 4)))
    y = (x[:, 0] + 0.5 * x[:, 1] + torch.from_numpy(rng.normal(0, 0.8, 6000)) > 2.0).double().reshape(-1, 1)
    assert 0.04 < float(y.mean()) < 0.12
    train, test = slice(0, 4000), slice(4000, None)
    names = ("f1", "recall", "precision")
    plain = linear(Task(BINARY, ZERO_ONE, "logits", ("no", "yes")), x[train], y[train], x[test], y[test], names, "test")
    auto = linear(Task(BINARY, ZERO_ONE, "logits", ("no", "yes")), x[train], y[train], x[test], y[test], names, "test", threshold="auto")
    assert "the best F1 on the train split" in auto.what and "threshold" not in plain.what
    chosen = float(auto.what.split("threshold ", 1)[1].split(",")[0])
    assert 0.1 < chosen < 0.5
    assert auto.metrics["f1"] > plain.metrics["f1"] + 0.02 and auto.metrics["recall"] > plain.metrics["recall"]
    fixed = linear(Task(BINARY, ZERO_ONE, "logits", ("no", "yes"), threshold=0.2), x[train], y[train], x[test], y[test], names, "test")
    assert "(threshold 0.2, the model's)" in fixed.what and fixed.metrics["recall"] > plain.metrics["recall"]

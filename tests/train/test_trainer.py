"""The loop's behaviours, through dltrain.fit on small generated tables."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from dltrain.errors import TrainingError
from dltrain.train.diagnose import patience_for


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4))
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["y"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    frame["amount"] = 3 * x[:, 0] - 2 * x[:, 2] + 10
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def config(path, tmp_path, **train):
    return {
        "data": {"source": str(path), "target": "y", "inputs": list("abcd"), "batch_size": 32},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": 5, "out_dir": str(tmp_path / "runs"), **train},
    }


def test_metrics_csv_has_a_row_per_epoch_with_the_documented_columns(table, tmp_path):
    result = dltrain.fit(config(table, tmp_path), progress=False)
    frame = pd.read_csv(result.run_dir / "metrics.csv")
    assert list(frame["epoch"]) == [1, 2, 3, 4, 5]
    assert list(frame.columns) == [
        "epoch", "train_loss", "train_accuracy", "train_balanced_accuracy", "train_precision", "train_recall", "train_f1",
        "train_macro_f1", "train_auc", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_precision", "val_recall",
        "val_f1", "val_macro_f1", "val_auc", "lr", "seconds",
    ]  # fmt: skip
    assert frame["val_accuracy"].iloc[-1] > 0.9


def test_early_stopping_stops_and_best_is_the_monitored_best(table, tmp_path):
    cfg = config(table, tmp_path, epochs=60, early_stopping={"patience": 3}, monitor="val_loss")
    result = dltrain.fit(cfg, progress=False)
    frame = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.stopped_early and len(frame) < 60
    best = frame["val_loss"].idxmin()
    assert result.best_epoch == frame["epoch"][best]
    val_rows = len(json.loads((result.run_dir / "data.json").read_text())["indices"]["val"])
    assert val_rows < 200 and len(frame) - result.best_epoch == patience_for(3, val_rows) > 3  # a small split waits longer
    state = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert state["best"]["epoch"] == result.best_epoch


def test_a_loss_that_explodes_stops_with_the_epoch_and_batch(table, tmp_path):
    cfg = config(table, tmp_path, epochs=5)
    cfg["optimizer"] = {"type": "SGD", "lr": 1e12}
    cfg["loss"] = "mse"
    cfg["data"]["target"] = "amount"
    with pytest.raises(TrainingError) as error:
        dltrain.fit(cfg, progress=False)
    assert "in epoch 1, batch" in str(error.value) and "lower learning rate" in str(error.value)


def test_accumulation_of_two_half_batches_matches_one_batch(table, tmp_path):
    whole = config(table, tmp_path, epochs=2)
    whole["data"]["shuffle"] = False
    whole["data"]["batch_size"] = 40  # 280 training rows: 7 batches, no remainder
    whole["model"]["layers"] = [{"Linear": "auto"}]
    whole["optimizer"] = {"type": "SGD", "lr": 0.1}
    half = {**whole, "data": {**whole["data"], "batch_size": 20}, "train": {**whole["train"], "accumulate": 2}}
    a = dltrain.fit(whole, progress=False)
    b = dltrain.fit(half, progress=False)
    wa = torch.load(a.run_dir / "last.pt", weights_only=True)["model"]["0.weight"]
    wb = torch.load(b.run_dir / "last.pt", weights_only=True)["model"]["0.weight"]
    assert torch.allclose(wa, wb, atol=1e-6)


def test_scheduler_lengths_are_filled_and_lr_logged(table, tmp_path):
    cfg = config(table, tmp_path, epochs=4)
    cfg["scheduler"] = {"type": "CosineAnnealingLR"}
    result = dltrain.fit(cfg, progress=False)
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] < lrs[0] and lrs[-1] < lrs[1]
    cfg["scheduler"] = {"type": "OneCycleLR", "max_lr": 0.05, "interval": "step"}
    lrs = [r["lr"] for r in dltrain.fit(cfg, progress=False).history]  # would raise past total_steps
    assert lrs[0] == pytest.approx(0.05 / 25) and max(lrs) > lrs[-1] > lrs[0]


def test_reduce_on_plateau_watches_the_monitor(table, tmp_path):
    cfg = config(table, tmp_path, epochs=8, monitor="val_accuracy")
    cfg["optimizer"] = {"type": "Adam", "lr": 0.0}
    cfg["scheduler"] = {"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5}
    result = dltrain.fit(cfg, progress=False)
    # lr 0 learns nothing: the scheduler saw the first accuracy as its best, in max mode
    state = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert state["scheduler"]["mode"] == "max"
    assert state["scheduler"]["num_bad_epochs"] == 0 and state["scheduler"]["best"] == result.history[0]["val_accuracy"]


def test_grad_clip_bounds_the_first_step(table, tmp_path):
    cfg = config(table, tmp_path, epochs=1, grad_clip=1e-6)
    cfg["optimizer"] = {"type": "SGD", "lr": 1.0}
    cfg["model"]["layers"] = [{"Linear": "auto"}]
    cfg["data"]["batch_size"] = 1000  # one step
    result = dltrain.fit(cfg, progress=False)
    torch.manual_seed(0)
    initial = torch.nn.Linear(4, 2).weight
    after = torch.load(result.run_dir / "last.pt", weights_only=True)["model"]["0.weight"]
    assert (after - initial).norm() <= 1e-6 * 1.01


def test_last_batch_of_one_row_joins_the_one_before(table, tmp_path):
    cfg = config(table, tmp_path, epochs=1)
    cfg["data"]["split"] = {"train": 0.7, "val": 0.3}  # 280 training rows
    cfg["data"]["batch_size"] = 279
    cfg["model"]["layers"] = [{"Linear": 8}, {"BatchNorm1d": None}, "ReLU", {"Linear": "auto"}]
    assert dltrain.fit(cfg, progress=False).history[0]["train_loss"] > 0

"""What `dltrain fit` shows: the live bar on a terminal, the compact line per epoch everywhere."""

import io
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import dltrain
import dltrain.console
from dltrain.train import progress as progress_module
from dltrain.train.progress import WIDTH, Bar, Lines, summary

BINARY = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "macro_f1", "auc")  # the defaults: the longest line


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 4))
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["y"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def config(path, tmp_path, epochs=3, monitor="val_loss"):
    return {
        "data": {"source": str(path), "target": "y", "inputs": list("abcd"), "batch_size": 8},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": epochs, "out_dir": str(tmp_path / "runs"), "monitor": monitor},
    }


def row(epoch=3, **values):
    full = {"epoch": epoch, "train_loss": 0.050441, "val_loss": 0.036621}
    for i, name in enumerate(BINARY):
        full[f"train_{name}"], full[f"val_{name}"] = 0.9714 - i / 100, 1.0
    return {**full, **values, "lr": 0.001, "seconds": 2.125}


@pytest.fixture
def chosen(monkeypatch):
    """The progress object that fit chooses, kept for the test to look at."""
    made = []
    choose = progress_module.choose

    def keep(*args, **kwargs):
        made.append(choose(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(progress_module, "choose", keep)
    return made


def test_the_bar_advances_and_reads_the_loss_rarely(table, tmp_path, monkeypatch, chosen):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(dltrain.console, "err", lambda: terminal)
    ends = []

    original = Bar.end_epoch

    def end_epoch(self, row):
        task = self.bar.tasks[0]
        ends.append((task.completed, task.total, task.fields["loss"], task.fields["left"], self.reads))
        original(self, row)

    monkeypatch.setattr(Bar, "end_epoch", end_epoch)
    steps = []
    advance = Bar.advance
    monkeypatch.setattr(Bar, "advance", lambda self, n: (steps.append(n), advance(self, n)))
    result = dltrain.fit(config(table, tmp_path), curves=False)
    bar = chosen[0]
    assert isinstance(bar, Bar) and bar.live
    assert len(ends) == 3
    per_epoch = ends[0][1]
    assert per_epoch > 40 and len(steps) == 3 * per_epoch  # every batch counted ...
    for completed, total, loss, left, _ in ends:
        assert completed == total == per_epoch  # ... and the bar at the end of each epoch
        assert re.fullmatch(r"\d\.\d{4}", loss), loss  # the running loss was read
        assert left.startswith("eta 0.0s  run ")
    # ... but read (a host sync each) only when the bar is redrawn: 4 times a second at most
    assert 3 <= bar.reads <= 3 + 4 * sum(r["seconds"] for r in result.history) + 3 < len(steps)
    lines = [line for line in screen.getvalue().splitlines() if "epoch" in line and "loss" in line and "/3  loss" in line]
    assert [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line).strip() for line in lines][-3:] == [
        summary(r, BINARY, "val_loss", 3) for r in result.history
    ]


def test_the_line_fits_100_columns_with_every_default_binary_metric():
    line = summary(row(), BINARY, "val_recall", 40)
    assert len(line) <= WIDTH, line
    assert line.startswith("epoch  3/40  loss 0.0504/0.0366  ") and line.endswith("  2.1s")
    assert "1.0000" in line and " 1/" not in line and "/1 " not in line  # four decimals always
    assert "rec 0.9414/1.0000" in line  # the monitored metric is kept, however low its rank
    assert "bal_acc 0.9614/1.0000" in line  # and the telling ones before precision
    assert "prec " not in line  # what does not fit is left out, not wrapped
    wide = summary(row(), BINARY, "val_loss", 40, width=200)
    assert all(f"{name} " in wide for name in ("acc", "bal_acc", "prec", "rec", "f1", "mF1", "auc"))


def test_the_line_without_a_val_split_and_with_large_values():
    line = summary({"epoch": 12, "train_loss": 123456.0, "train_mae": 2.0, "train_r2": float("nan"), "seconds": 75}, ["mae", "r2"], "train_loss", 100)
    assert line == "epoch  12/100  loss 1.235e+05  mae 2.0000  r2 nan  1m15s"


def test_without_a_terminal_each_epoch_is_the_same_line_and_no_step_is_seen(table, tmp_path, capsys, monkeypatch, chosen):
    called = []
    monkeypatch.setattr(Lines, "advance", lambda self, n: called.append(n))
    result = dltrain.fit(config(table, tmp_path, monitor="val_macro_f1"), curves=False)
    assert isinstance(chosen[0], Lines) and not chosen[0].live and called == []
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert lines == [summary(r, BINARY, "val_macro_f1", 3) for r in result.history]
    assert all(len(line) <= WIDTH and "mF1 " in line for line in lines)
    assert "each value: train/val" in err

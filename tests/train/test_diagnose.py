import csv

from dltrain.train.diagnose import diagnose


def rows(train, val):
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(train, val))]


def test_overfitting_when_val_rises_while_train_falls():
    hint = diagnose(rows([1.0, 0.6, 0.4, 0.3, 0.2, 0.1], [0.9, 0.6, 0.7, 0.8, 0.9, 1.0]), baseline=1.1)
    assert hint.startswith("Overfitting: validation loss rose from 0.6 (epoch 2) to 1 (epoch 6)")


def test_no_hint_for_a_healthy_run_or_noise():
    assert diagnose(rows([1.0, 0.5, 0.3, 0.2], [0.9, 0.5, 0.35, 0.3]), baseline=1.1) is None
    assert diagnose(rows([1.0, 0.5, 0.4, 0.39, 0.38], [0.5, 0.4, 0.401, 0.402, 0.403]), baseline=1.1) is None


def test_underfitting_when_both_stay_near_the_baseline():
    hint = diagnose(rows([1.09, 1.08, 1.08], [1.1, 1.09, 1.09]), baseline=1.0986)
    assert hint.startswith("Underfitting: training and validation loss (1.08, 1.09) stayed close to 1.099")


def test_a_rise_within_a_small_splits_noise_is_not_overfitting():
    train = [1.0, 0.6, 0.4, 0.3, 0.25, 0.2, 0.18]
    val = [0.9, 0.6, 0.5, 0.55, 0.56, 0.57, 0.58]  # 16% above its best
    assert diagnose(rows(train, val), baseline=1.1, val_rows=40) is None  # 40 rows: within 1 + 2/sqrt(40) = 1.32
    assert diagnose(rows(train, val), baseline=1.1, val_rows=2000).startswith("Overfitting")
    assert diagnose(rows(train, [0.9, 0.6, 0.5, 0.6, 0.65, 0.7, 0.75]), baseline=1.1, val_rows=40).startswith("Overfitting")


def test_a_model_still_improving_at_the_end_is_told_to_train_longer():
    train = [1.0, 0.8, 0.7, 0.62, 0.56, 0.52, 0.49, 0.46, 0.44, 0.42, 0.4, 0.38]
    val = [1.0, 0.85, 0.75, 0.68, 0.63, 0.59, 0.56, 0.53, 0.51, 0.49, 0.47, 0.45]
    hint = diagnose(rows(train, val), baseline=1.1, val_rows=100)
    assert hint.startswith("Still learning: validation loss fell from 0.56 to 0.45 over the last 5 epochs")
    assert "train.epochs=24" in hint and "undertrained rather than too small" in hint
    assert diagnose(rows(train[:8], val[:8]), baseline=1.1) is None  # a short run was asked to be short
    assert diagnose(rows(train, val), baseline=1.1, val_rows=100, stopped_early=True) is None
    flat = [1.0, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert diagnose(rows(flat, flat), baseline=1.1) is None  # at its best, but no longer falling


def test_a_run_that_early_stopping_ended_gets_no_overfitting_hint():
    train = [1.0, 0.6, 0.4, 0.3, 0.25, 0.2, 0.18]
    val = [0.9, 0.6, 0.5, 0.6, 0.65, 0.7, 0.75]
    assert diagnose(rows(train, val), baseline=1.1, val_rows=2000).startswith("Overfitting")
    assert diagnose(rows(train, val), baseline=1.1, val_rows=2000, stopped_early=True) is None  # what it stopped for
    configured = diagnose(rows(train, val), baseline=1.1, val_rows=2000, early_stopping=True)
    assert configured.startswith("Overfitting") and "train.early_stopping" not in configured


def test_a_rise_that_is_small_next_to_the_baseline_is_not_overfitting():
    """A loss of 0.01 that doubles on a split classified right is confidence, not learning by heart."""
    train = [0.5, 0.1, 0.03, 0.02, 0.015, 0.012, 0.01]
    val = [0.4, 0.08, 0.01, 0.012, 0.015, 0.018, 0.02]
    assert diagnose(rows(train, val), baseline=1.1, val_rows=2000) is None


def test_a_saturated_monitor_keeps_the_tied_epoch_with_the_lowest_val_loss(workdir, cli):
    """penguins' val_accuracy is 1.0 from epoch 2: best.pt holds the epoch of those with the lowest
    val_loss, not the first, and fit says so in one line (no hint)."""
    import torch

    result = cli("fit", "configs/penguins.yaml", "train.epochs=12", "--out", "run")
    assert result.code == 0, result.output
    history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader((workdir / "run" / "metrics.csv").open())]
    top = max(r["val_accuracy"] for r in history)
    tied = [r for r in history if r["val_accuracy"] == top]
    assert len(tied) > 2  # the case this is about
    lowest = min(tied, key=lambda r: r["val_loss"])
    assert lowest["epoch"] > tied[0]["epoch"]  # a later epoch than the first to reach it
    best = torch.load(workdir / "run" / "best.pt", map_location="cpu", weights_only=False)
    assert best["epoch"] == best["best"]["epoch"] == int(lowest["epoch"])  # best.pt is that epoch's state
    assert f"Best epoch {int(lowest['epoch'])} of 12 (val_accuracy)" in result.stdout
    assert f"val_accuracy 1.0000 on {len(tied)} epochs: best.pt holds epoch {int(lowest['epoch'])}, the one with the lowest val_loss" in result.stdout
    assert "Note:" not in result.stdout and "Overfitting" not in result.stdout
    # runs, plot and report mark the same epoch as best.pt holds
    from dltrain.tools.runs import best_index, read_history

    frame = read_history(workdir / "run")
    assert int(frame["epoch"][best_index(frame, "val_accuracy", True)]) == int(lowest["epoch"])
    listed = [line.split("│") for line in cli("runs", ".").stdout.splitlines() if "val_accuracy" in line and "│" in line]
    assert int(listed[0][5]) == int(lowest["epoch"])


def test_real_fits_an_overfit_and_an_underfit_model_are_told_apart(tmp_path):
    """60 rows of noise under a wide network trained long: overfitting; a network trained at a
    rate too small to move: underfitting."""
    import numpy as np
    import pandas as pd

    import dltrain

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 10)), columns=[f"x{i}" for i in range(10)])
    frame["y"] = np.where(frame["x0"] + rng.normal(0, 1.5, 400) > 0, "a", "b")
    frame.to_csv(tmp_path / "noisy.csv", index=False)

    def fit(layers, lr, epochs):
        return dltrain.fit(
            {
                "seed": 0,
                "data": {"source": str(tmp_path / "noisy.csv"), "target": "y", "batch_size": 16, "split": {"train": 0.5, "val": 0.5}},
                "model": {"layers": layers},
                "loss": "CrossEntropyLoss",
                "optimizer": {"type": "Adam", "lr": lr},
                "train": {"epochs": epochs, "out_dir": str(tmp_path / "runs")},
            },
            progress=False,
        )

    wide = [{"Linear": 256}, "ReLU", {"Linear": 256}, "ReLU", {"Linear": "auto"}]
    assert fit(wide, 0.003, 40).hint.startswith("Overfitting")
    assert fit([{"Linear": 4}, "ReLU", {"Linear": "auto"}], 1e-6, 5).hint.startswith("Underfitting")

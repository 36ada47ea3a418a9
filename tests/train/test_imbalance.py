"""Class imbalance: balanced class weights, the balanced sampler, balanced accuracy and macro F1,
and a binary target's decision threshold (train.threshold: auto), on tables built to need them."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import dltrain
from dltrain.checkpoint import load, load_run
from dltrain.inference import evaluate, predict
from dltrain.task import BINARY, CATEGORY, INDEX, ZERO_ONE, Task
from dltrain.train.metrics import Outcome, best_f1_threshold, compute

SHARES = [0.56, 0.24, 0.14, 0.04, 0.02]  # two rare classes: 4% and 2%


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """2,500 rows of five overlapping classes, two of them rare."""
    rng = np.random.default_rng(0)
    y = rng.choice(5, size=2500, p=SHARES)
    x = rng.normal(0, 1.3, size=(5, 4))[y] + rng.normal(0, 1.0, size=(len(y), 4))
    frame = pd.DataFrame(x, columns=list("abcd")).assign(y=[f"c{k}" for k in y])
    path = tmp_path_factory.mktemp("classes") / "classes.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """6,000 rows, 5% of them positive, the positives shifted on two of four columns."""
    rng = np.random.default_rng(1)
    y = rng.random(6000) < 0.05
    x = rng.normal(0, 1.0, size=(len(y), 4)) + np.outer(y, [1.6, 1.2, 0.0, 0.0])
    frame = pd.DataFrame(x, columns=list("abcd")).assign(y=np.where(y, "yes", "no"))
    path = tmp_path_factory.mktemp("binary") / "binary.csv"
    frame.to_csv(path, index=False)
    return path


def config(source, tmp_path, loss="CrossEntropyLoss", data=None, **train) -> dict:
    return {
        "seed": 0,
        "data": {"source": str(source), "target": "y", "batch_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2}, **(data or {})},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": loss,
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": 6, "out_dir": str(tmp_path / "runs"), **train},
    }


def fit(cfg: dict | None = None, **kwargs):
    return dltrain.fit(cfg, progress=False, **kwargs)


# ----- the metrics


def test_balanced_accuracy_and_macro_f1_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    target = rng.choice(4, size=200, p=[0.7, 0.2, 0.07, 0.03])
    logits = torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) + 2 * torch.nn.functional.one_hot(torch.from_numpy(target), 4)
    task = Task(CATEGORY, INDEX, "logits", ("a", "b", "c", "d"))
    found = compute(("balanced_accuracy", "macro_f1", "f1"), Outcome(task, logits, torch.from_numpy(target)))
    predicted = logits.argmax(1).numpy()
    assert found["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(target, predicted))
    assert found["macro_f1"] == pytest.approx(metrics.f1_score(target, predicted, average="macro"))
    assert found["f1"] == pytest.approx(found["macro_f1"])  # f1 of classes is macro already

    binary = Task(BINARY, ZERO_ONE, "logits", ("no", "yes"))
    y = torch.from_numpy((target == 0).astype("float32")).reshape(-1, 1)
    found = compute(("balanced_accuracy", "macro_f1", "f1"), Outcome(binary, logits[:, :1], y))
    predicted = (logits[:, 0] > 0).long().numpy()
    assert found["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y.reshape(-1), predicted))
    assert found["macro_f1"] == pytest.approx(metrics.f1_score(y.reshape(-1), predicted, average="macro"))
    assert found["f1"] == pytest.approx(metrics.f1_score(y.reshape(-1), predicted))  # the positive class's


def test_the_chosen_threshold_gives_the_best_f1_of_any_threshold():
    rng = np.random.default_rng(3)
    y = torch.from_numpy((rng.random(400) < 0.1).astype("float32")).reshape(-1, 1)
    logits = torch.randn(400, 1, generator=torch.Generator().manual_seed(0)) + 1.5 * y - 1.0
    task = Task(BINARY, ZERO_ONE, "logits", ("no", "yes"))
    chosen = best_f1_threshold(task, logits, y)

    def f1(threshold: float) -> float:
        return compute(("f1",), Outcome(Task(BINARY, ZERO_ONE, "logits", ("no", "yes"), threshold=threshold), logits, y))["f1"]

    every = [f1(float(t)) for t in np.linspace(0.01, 0.99, 197)]
    assert 0 < chosen < 1 and chosen != 0.5
    assert f1(chosen) >= max(every) - 1e-9
    assert f1(chosen) > f1(0.5)


# ----- balanced weights and the balanced sampler


def test_balanced_weight_and_sampler_raise_balanced_accuracy_over_the_plain_loss(classes, tmp_path):
    found = {}
    for name, cfg in {
        "plain": config(classes, tmp_path),
        "weight": config(classes, tmp_path, loss={"type": "CrossEntropyLoss", "weight": "balanced"}),
        "sampler": config(classes, tmp_path, data={"sampler": "balanced"}),
    }.items():
        found[name] = evaluate(fit(cfg).run_dir, "test").metrics
    plain = found["plain"]
    for name in ("weight", "sampler"):
        assert found[name]["balanced_accuracy"] > plain["balanced_accuracy"] + 0.05, found
        assert found[name]["macro_f1"] > plain["macro_f1"] - 0.05, found  # recall bought with some precision
    assert plain["accuracy"] > found["weight"]["accuracy"]  # what the plain loss optimizes


def test_balanced_weights_are_the_training_splits_and_kept_in_checkpoints(classes, tmp_path):
    result = fit(config(classes, tmp_path, loss={"type": "CrossEntropyLoss", "weight": "balanced"}, epochs=1))
    run = result.run_dir
    table = pd.read_csv(classes)
    train = table["y"].iloc[json.loads((run / "data.json").read_text())["indices"]["train"]]
    counts = train.value_counts().sort_index()
    expected = len(train) / (len(counts) * counts.to_numpy())  # scikit-learn's class_weight="balanced"
    checkpoint = load(run, "last.pt")
    assert checkpoint.recipe.loss.kwargs["weight"] == pytest.approx(list(expected), rel=1e-5)
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"]["weight"] == "balanced"  # the config as written
    loaded = load_run(run)
    assert loaded.loss_fn.weight.tolist() == pytest.approx(list(expected), rel=1e-5)
    assert expected.argmax() == list(counts.index).index("c4")  # the rarest class weighs most


def test_resume_with_balanced_weights_and_sampler_reaches_the_unbroken_runs_weights(classes, tmp_path, monkeypatch):
    """Stopped by SIGINT in the middle of epoch 2 (the epoch's drawn rows kept), resumed and extended."""
    import os
    import signal

    from dltrain.train.trainer import Interrupted, count_batches

    loss = {"type": "CrossEntropyLoss", "weight": "balanced"}
    unbroken = fit(config(classes, tmp_path / "a", loss=loss, data={"sampler": "balanced"}, epochs=4))
    per_epoch = count_batches(len(json.loads((unbroken.run_dir / "data.json").read_text())["indices"]["train"]), 64)
    steps, step = [0], torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        steps[0] += 1
        if steps[0] == 1 + per_epoch + 5:  # the first step is the rehearsal's
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    with pytest.raises(Interrupted):
        fit(config(classes, tmp_path / "b", loss=loss, data={"sampler": "balanced"}, epochs=3), out=tmp_path / "stopped")
    monkeypatch.undo()
    assert (load(tmp_path / "stopped", "last.pt").state["batch"]) == 5
    resumed = fit(resume=tmp_path / "stopped", overrides=["train.epochs=4"])
    expected, found = load(unbroken.run_dir, "last.pt"), load(resumed.run_dir, "last.pt")
    assert found.recipe.loss.kwargs == expected.recipe.loss.kwargs
    for name, tensor in expected.state["model"].items():
        assert torch.equal(found.state["model"][name], tensor), name
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in unbroken.history]


def test_the_sampler_draws_rare_classes_as_often_as_common_ones(classes, tmp_path):
    from dltrain.build import build
    from dltrain.plan import make_plan
    from dltrain.train.trainer import Job, Settings, Trainer

    parts = build(make_plan(config(classes, tmp_path, data={"sampler": "balanced"})))
    job = Job(parts.model, parts.loss_fn, parts.optimizer, None, parts.task, parts.data.splits["train"], sample_weights=parts.sample_weights)
    trainer = Trainer(job, Settings(epochs=1, batch_size=64, seed=0), sink=None, device=torch.device("cpu"))
    order = trainer._draw_order(job.train)
    assert len(order) == len(job.train)  # an epoch is as many rows as the split
    drawn = torch.bincount(job.train.y[order], minlength=5).double() / len(order)
    assert drawn.min() > 0.13 and drawn.max() < 0.27  # each near 1/5; the rarest class is 2% of the split
    again = Trainer(job, Settings(epochs=1, batch_size=64, seed=0), sink=None, device=torch.device("cpu"))
    assert torch.equal(again._draw_order(job.train), order)  # seeded by the run's seed


def test_pos_weight_balanced_raises_balanced_accuracy_of_a_binary_target(binary, tmp_path):
    plain = evaluate(fit(config(binary, tmp_path, loss="BCEWithLogitsLoss")).run_dir, "test").metrics
    weighted_run = fit(config(binary, tmp_path, loss={"type": "BCEWithLogitsLoss", "pos_weight": "balanced"})).run_dir
    weighted = evaluate(weighted_run, "test").metrics
    assert weighted["balanced_accuracy"] > plain["balanced_accuracy"] + 0.05, (plain, weighted)
    (pos_weight,) = load(weighted_run).recipe.loss.kwargs["pos_weight"]
    assert 12 < pos_weight < 25  # negatives / positives of the training split, about 19


# ----- the decision threshold


def test_threshold_auto_is_chosen_on_val_kept_and_used_by_evaluate_and_predict(binary, tmp_path, cli):
    plain_run = fit(config(binary, tmp_path, loss="BCEWithLogitsLoss")).run_dir
    result = fit(config(binary, tmp_path, loss="BCEWithLogitsLoss", threshold="auto"))
    run = result.run_dir
    threshold = load(run).state["threshold"]
    assert result.threshold == threshold and 0 < threshold < 0.5  # rare positives: lower than 0.5
    assert load(plain_run).state["threshold"] == 0.5
    # the same weights (the threshold changes no step of training): F1 rises by the threshold alone
    for split, margin in (("val", 0.05), ("test", 0.0)):  # measured: +0.18 on val (where it is chosen), +0.09 on test
        plain, auto = evaluate(plain_run, split).metrics, evaluate(run, split).metrics
        assert auto["f1"] > plain["f1"] + margin, (split, plain, auto)
        assert auto["loss"] == pytest.approx(plain["loss"])
    rows = pd.read_csv(binary).drop(columns="y")
    predicted = predict(run, rows)
    as_plain = predict(plain_run, rows)
    assert np.allclose(predicted["prob_yes"], as_plain["prob_yes"])
    assert (predicted["prediction"] == np.where(predicted["prob_yes"] > threshold, "yes", "no")).all()
    between = (predicted["prob_yes"] > threshold) & (predicted["prob_yes"] <= 0.5)
    assert between.any()  # rows whose label the threshold changes
    assert (predicted["prediction"][between] == "yes").all() and (as_plain["prediction"][between] == "no").all()
    printed = cli("predict", run, binary)
    assert printed.code == 0, printed.output
    assert pd.read_csv(io.StringIO(printed.stdout))["prediction"].tolist() == predicted["prediction"].tolist()


def test_a_threshold_given_as_a_number_is_kept_and_used(binary, tmp_path):
    run = fit(config(binary, tmp_path, loss={"type": "CrossEntropyLoss"}, epochs=2, threshold=0.2)).run_dir
    assert load(run).state["threshold"] == 0.2
    predicted = predict(run, pd.read_csv(binary).drop(columns="y"))
    assert (predicted["prediction"] == np.where(predicted["prob_yes"] > 0.2, "yes", "no")).all()


def test_fit_prints_the_chosen_threshold(binary, tmp_path, cli):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(binary, tmp_path, loss="bce", epochs=2, threshold="auto")))
    result = cli("fit", path)
    assert result.code == 0, result.output
    assert "Decision threshold: 0." in result.output and "maximizes F1 on the validation split" in result.output


# ----- what is refused


@pytest.mark.parametrize(
    "change, key, fragments",
    [
        ({"loss": {"type": "CrossEntropyLoss", "weight": "balance"}}, "loss", ["'weight'", "balanced", "'balance'"]),
        ({"loss": {"type": "BCEWithLogitsLoss", "weight": "balanced"}}, "loss", ["pos_weight: balanced"]),
        ({"data": {"sampler": "foo"}}, "data.sampler", ["'balanced'", "'foo'"]),
        ({"train": {"threshold": 2}}, "train.threshold", ["less than 1", "'auto'", "found 2"]),
        ({"train": {"threshold": "best"}}, "train.threshold", ["'auto'", "'best'"]),
        ({"train": {"threshold": "auto"}, "loss": "CrossEntropyLoss", "five": True}, "train.threshold", ["binary target", "category"]),
        ({"train": {"threshold": "auto", "monitor": "train_loss"}, "data": {"split": {"train": 0.8, "test": 0.2}}}, "train.threshold", ["validation split"]),
        ({"data": {"sampler": "balanced", "in_memory": False}}, "data.sampler", ["in memory", "data.in_memory: true"]),
    ],
)
def test_bad_values_are_exit_2_naming_the_key_and_what_is_accepted(change, key, fragments, classes, binary, tmp_path, cli):
    change = dict(change)
    cfg = config(classes if change.pop("five", False) else binary, tmp_path, loss="BCEWithLogitsLoss")
    for section, value in change.items():
        cfg[section] = {**cfg[section], **value} if isinstance(value, dict) and isinstance(cfg[section], dict) and "type" not in value else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = cli("check", path)
    assert result.code == 2, result.output
    assert key in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output

import math

import pytest
import torch

from dltrain.task import Task
from dltrain.train.losses import loss_registry
from dltrain.train.metrics import DEFAULTS, METRICS, Outcome, compute, higher_is_better


def outcome(loss: str, target_type: str, output, target, classes=("a", "b", "c")) -> Outcome:
    entry = loss_registry().get(loss)
    task = Task(target_type, entry.form, entry.output, classes)
    return Outcome(task, torch.tensor(output, dtype=torch.float32), torch.tensor(target))


def test_multiclass_metrics_from_a_known_confusion_matrix():
    # true a a b b c c; predicted a b b b c a
    logits = [[9, 0, 0], [0, 9, 0], [0, 9, 0], [0, 9, 0], [0, 0, 9], [9, 0, 0]]
    result = compute(DEFAULTS["category"], outcome("CrossEntropyLoss", "category", logits, [0, 0, 1, 1, 2, 2]))
    precision = [1 / 2, 2 / 3, 1]
    recall = [1 / 2, 1, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["precision"] == pytest.approx(sum(precision) / 3)
    assert result["recall"] == pytest.approx(sum(recall) / 3)
    assert result["f1"] == pytest.approx(sum(f1) / 3)


def test_binary_metrics_of_the_positive_class_and_auc():
    logits = [[2.0], [-1.0], [0.5], [-3.0], [1.0]]
    target = [[1.0], [0.0], [0.0], [1.0], [1.0]]
    result = compute(DEFAULTS["binary"], outcome("BCEWithLogitsLoss", "binary", logits, target, ("no", "yes")))
    # predicted positive: rows 0, 2, 4; true positive: 0, 3, 4
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    # positives score 2, -3, 1; negatives -1, 0.5: pairs won 2+0+2 of 6
    assert result["auc"] == pytest.approx(4 / 6)


def test_auc_counts_ties_as_half():
    result = compute(("auc",), outcome("BCEWithLogitsLoss", "binary", [[0.0], [0.0]], [[1.0], [0.0]], ("n", "p")))
    assert result["auc"] == pytest.approx(0.5)


def test_cross_entropy_on_a_binary_target_gives_binary_metrics():
    logits = [[0.0, 3.0], [3.0, 0.0], [0.0, 3.0]]
    result = compute(DEFAULTS["binary"], outcome("CrossEntropyLoss", "binary", logits, [1, 0, 0], ("n", "p")))
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["precision"] == pytest.approx(1 / 2)
    assert result["recall"] == pytest.approx(1.0)


def test_regression_metrics_in_the_targets_own_units():
    entry = loss_registry().get("mse")
    task = Task("numeric", entry.form, entry.output, (), mean=100.0, std=10.0)
    predicted = torch.tensor([[0.0], [1.0], [-1.0]])  # 100, 110, 90
    actual = torch.tensor([[0.5], [1.0], [-2.0]])  # 105, 110, 80
    result = compute(DEFAULTS["numeric"], Outcome(task, predicted, actual))
    assert result["mae"] == pytest.approx((5 + 0 + 10) / 3)
    assert result["rmse"] == pytest.approx(math.sqrt((25 + 0 + 100) / 3))
    mean = (105 + 110 + 80) / 3
    total = sum((v - mean) ** 2 for v in (105, 110, 80))
    assert result["r2"] == pytest.approx(1 - 125 / total)


def test_a_metric_undefined_on_a_split_is_nan_with_a_warning(capsys):
    logits = [[9, 0, 0], [0, 9, 0]]
    result = compute(("recall", "accuracy"), outcome("CrossEntropyLoss", "category", logits, [0, 1]))
    assert math.isnan(result["recall"]) and result["accuracy"] == 1.0
    assert "recall is undefined on the val split: no rows of class 'c'" in capsys.readouterr().err


def test_directions():
    assert higher_is_better("val_accuracy") and higher_is_better("val_r2") and higher_is_better("auc")
    assert not higher_is_better("val_loss") and not higher_is_better("val_mae") and not higher_is_better("train_rmse")


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_has_a_default_task(name):
    assert any(name in names for names in DEFAULTS.values())

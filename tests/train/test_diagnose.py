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

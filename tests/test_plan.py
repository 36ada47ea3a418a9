"""The plan: every registry and file check, reported together with the config's own problems."""

import pytest

from dltrain.errors import ConfigError
from dltrain.plan import make_plan
from tests.conftest import IRIS, iris_config


def problems(path, overrides=()):
    with pytest.raises(ConfigError) as error:
        make_plan(path, list(overrides))
    return [str(p) for p in error.value.problems]


def test_valid_config_fills_defaults(tmp_path):
    plan = make_plan(iris_config(tmp_path))
    assert plan.cfg.config.train.epochs == 3
    assert plan.cfg.config.train.monitor == "val_loss"
    assert plan.cfg.config.data.shuffle is True
    assert plan.optimizer.name == "Adam" and plan.optimizer.kwargs == {"lr": 0.01}
    assert [layer.name for layer in plan.layers] == ["Linear", "ReLU", "Linear"]
    assert plan.name == "iris"


def test_overrides_by_dotted_path_and_index(tmp_path):
    plan = make_plan(iris_config(tmp_path), ["optimizer.lr=0.5", "model.layers.0.Linear=64", "train.epochs=7", "loss=nll"])
    assert plan.optimizer.kwargs["lr"] == 0.5
    assert plan.layers[0].args == (64,)
    assert plan.cfg.config.train.epochs == 7
    assert plan.loss.name == "NLLLoss"


def test_all_errors_reported_together_with_lines(tmp_path):
    path = iris_config(
        tmp_path,
        IRIS.replace("batch_size: 16", "batch_sise: 16").replace("- ReLU", "- Relu").replace("epochs: 3", "epochs: -1"),
    )
    found = problems(path)
    assert len(found) == 3
    assert any(p.startswith(f"{path}:7: data.batch_sise: unknown key 'batch_sise'. Did you mean 'batch_size'?") for p in found)
    assert any(p.startswith(f"{path}:11: model.layers.1: unknown layer 'Relu'") and "'ReLU'" in p for p in found)
    assert any(p.startswith(f"{path}:16: train.epochs: expected a number greater than 0; found -1") for p in found)


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("train.scheduler={type: StepLR, step_size: 5}", "train.scheduler: unknown key 'scheduler'. scheduler is a top-level key, beside optimizer and train, not a key of train"),
        ("train.batch_size=8", "train.batch_size: unknown key 'batch_size'. batch_size belongs under data: write it as data.batch_size."),
        ("data.patience=3", "data.patience: unknown key 'patience'. patience belongs under train.early_stopping: write it as train.early_stopping.patience."),
        ("data.batch_sise=8", "data.batch_sise: unknown key 'batch_sise'. Did you mean 'batch_size'?"),
    ],
)
def test_a_key_in_the_wrong_section_says_where_it_belongs(tmp_path, override, said):
    with pytest.raises(ConfigError) as error:
        make_plan(iris_config(tmp_path), [override])
    assert said in str(error.value)


def test_layer_typo_suggests_the_name(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("- Linear: 16", "- Linaer: 16")))
    assert "unknown layer 'Linaer'. Did you mean 'Linear'" in found[0]
    assert ":10: model.layers.0" in found[0]


def test_layer_argument_checked_against_signature(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("- Linear: 16", "- Linear: {out_feature: 16}")))
    assert "Linear has no argument 'out_feature'. Did you mean 'out_features'?" in found[0]


def test_inferred_argument_may_not_be_given(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("- Linear: 16", "- Linear: {in_features: 4, out_features: 16}")))
    assert "`in_features` is inferred" in found[0]


def test_unknown_optimizer_argument(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("{type: Adam, lr: 0.01}", "{type: Adam, lr: 0.01, momentum: 0.9}")))
    assert found[0].startswith(f"{tmp_path / 'config.yaml'}:14: optimizer: Adam has no argument 'momentum'")
    assert "It takes: lr=" in found[0]


def test_unknown_scheduler_and_loss_names(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("loss: CrossEntropyLoss", "loss: CrossEntropy\nscheduler: StepLr")))
    assert any("unknown loss 'CrossEntropy'. Did you mean 'CrossEntropyLoss'" in p for p in found)
    assert any("StepLR" in p for p in found)


def test_scheduler_needs_its_arguments(tmp_path):
    found = problems(iris_config(tmp_path, IRIS + "scheduler: StepLR\n"))
    assert "StepLR needs argument(s) step_size" in found[0]


def test_missing_data_file(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("source: iris.csv", "source: irises.csv")))
    assert found[0].startswith(f"{tmp_path / 'config.yaml'}:4: data.source: file not found: 'irises.csv'")


def test_unknown_monitor_metric(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("epochs: 3", "epochs: 3\n  monitor: val_acuracy")))
    assert "unknown metric 'acuracy'. Did you mean 'accuracy'" in found[0]


def test_component_forms(tmp_path):
    body = IRIS.replace(
        "    - Linear: 16\n    - ReLU\n",
        "    - {type: Linear, out_features: 16}\n    - ReLU:\n    - Dropout: {p: 0.1}\n",
    ).replace("loss: CrossEntropyLoss", "loss: {type: CrossEntropyLoss, weight: [1.0, 2.0, 1.0]}")
    plan = make_plan(iris_config(tmp_path, body))
    assert plan.layers[0].kwargs == {"out_features": 16}
    assert plan.layers[2].kwargs == {"p": 0.1}
    assert plan.loss.kwargs == {"weight": [1.0, 2.0, 1.0]}

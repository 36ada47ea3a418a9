import pytest

from dltrain.config import load_config
from dltrain.errors import ConfigError
from tests.conftest import IRIS, iris_config, write


def problems(path, overrides=()):
    with pytest.raises(ConfigError) as error:
        load_config(path, list(overrides))
    return [str(p) for p in error.value.problems]


def test_valid_config_fills_defaults(tmp_path):
    cfg = load_config(iris_config(tmp_path))
    assert cfg.config.train.epochs == 3
    assert cfg.config.train.monitor == "val_loss"
    assert cfg.config.data.shuffle is True
    assert cfg.optimizer.name == "Adam" and cfg.optimizer.kwargs == {"lr": 0.01}
    assert [layer.name for layer in cfg.layers] == ["Linear", "ReLU", "Linear"]
    assert cfg.name == "iris"


def test_overrides_by_dotted_path_and_index(tmp_path):
    cfg = load_config(iris_config(tmp_path), ["optimizer.lr=0.5", "model.layers.0.Linear=64", "train.epochs=7", "loss=nll"])
    assert cfg.optimizer.kwargs["lr"] == 0.5
    assert cfg.layers[0].args == (64,)
    assert cfg.config.train.epochs == 7
    assert cfg.loss.name == "NLLLoss"


def test_override_errors_cite_the_command_line(tmp_path):
    found = problems(iris_config(tmp_path), ["model.layers.9.Linear=3", "nonsense", "train.epochs=[1"])
    assert any("command line: model.layers.9" in p and "list of 3 items" in p for p in found)
    assert any("expected KEY=VALUE" in p for p in found)


def test_override_value_is_checked_like_a_file(tmp_path):
    found = problems(iris_config(tmp_path), ["data.batch_size=-4"])
    assert found == ["command line: data.batch_size: expected a number greater than 0; found -4"]


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


def test_ratios_must_sum_to_one(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("test: 0.15", "test: 0.25")))
    assert found == [f"{tmp_path / 'config.yaml'}:6: data.split: the ratios must sum to 1, found 0.7 + 0.15 + 0.25 = 1.1"]


def test_negative_batch_size(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("batch_size: 16", "batch_size: -16")))
    assert found == [f"{tmp_path / 'config.yaml'}:7: data.batch_size: expected a number greater than 0; found -16"]


def test_missing_data_file(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("source: iris.csv", "source: irises.csv")))
    assert found[0].startswith(f"{tmp_path / 'config.yaml'}:4: data.source: file not found: 'irises.csv'")


def test_missing_config_file_and_empty_config(tmp_path):
    assert "config file not found" in problems(tmp_path / "nope.yaml")[0]
    assert "the config file is empty" in problems(write(tmp_path / "empty.yaml", "\n# nothing\n"))[0]


def test_yaml_syntax_error_with_line(tmp_path):
    found = problems(write(tmp_path / "bad.yaml", "data:\n  source: x.csv\n  inputs: [a, b\nloss: mse\n"))
    assert found[0].startswith(f"{tmp_path / 'bad.yaml'}:4: YAML syntax error")


def test_missing_required_sections(tmp_path):
    found = problems(write(tmp_path / "c.yaml", "data: {source: x.csv}\n"))
    assert any("model: required key is missing" in p for p in found)
    assert any("loss: required key is missing" in p for p in found)


def test_wrong_types_are_named(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("epochs: 3", "epochs: three\n  device: gpu")))
    assert any("train.epochs: expected a whole number; found 'three'" in p for p in found)
    assert any("train.device: expected auto, cpu, cuda, cuda:N or mps; found 'gpu'" in p for p in found)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    path = iris_config(tmp_path)
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert cfg.as_run()["data"]["source"] == str(tmp_path / "iris.csv")


def test_unknown_monitor_metric(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("epochs: 3", "epochs: 3\n  monitor: val_acuracy")))
    assert "unknown metric 'acuracy'. Did you mean 'accuracy'" in found[0]


def test_component_forms(tmp_path):
    body = IRIS.replace(
        "    - Linear: 16\n    - ReLU\n",
        "    - {type: Linear, out_features: 16}\n    - ReLU:\n    - Dropout: {p: 0.1}\n",
    ).replace("loss: CrossEntropyLoss", "loss: {type: CrossEntropyLoss, weight: [1.0, 2.0, 1.0]}")
    cfg = load_config(iris_config(tmp_path, body))
    assert cfg.layers[0].kwargs == {"out_features": 16}
    assert cfg.layers[2].kwargs == {"p": 0.1}
    assert cfg.loss.kwargs == {"weight": [1.0, 2.0, 1.0]}

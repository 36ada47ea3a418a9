import pytest

from dltrain.config import load_config
from dltrain.errors import ConfigError
from tests.conftest import IRIS, iris_config, write


def problems(path, overrides=()):
    with pytest.raises(ConfigError) as error:
        load_config(path, list(overrides))
    return [str(p) for p in error.value.problems]


def test_override_errors_cite_the_command_line(tmp_path):
    found = problems(iris_config(tmp_path), ["model.layers.9.Linear=3", "nonsense", "train.epochs=[1"])
    assert any("command line: model.layers.9" in p and "list of 3 items" in p for p in found)
    assert any("expected KEY=VALUE" in p for p in found)


def test_override_value_is_checked_like_a_file(tmp_path):
    found = problems(iris_config(tmp_path), ["data.batch_size=-4"])
    assert found == ["command line: data.batch_size: expected a number greater than 0; found -4"]


def test_ratios_must_sum_to_one(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("test: 0.15", "test: 0.25")))
    assert found == [f"{tmp_path / 'config.yaml'}:6: data.split: the ratios must sum to 1, found 0.7 + 0.15 + 0.25 = 1.1"]


def test_negative_batch_size(tmp_path):
    found = problems(iris_config(tmp_path, IRIS.replace("batch_size: 16", "batch_size: -16")))
    assert found == [f"{tmp_path / 'config.yaml'}:7: data.batch_size: expected a number greater than 0; found -16"]


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

"""The checkpoint format: save and load mirror each other, old runs load, anything else is refused."""

import json
import shutil

import pandas as pd
import pytest
import torch

from dltrain import checkpoint
from dltrain.checkpoint import FORMAT_VERSION, load, load_run
from dltrain.errors import CheckpointError
from tests.conftest import ROOT, iris_config

RELEASE = ROOT / "tests" / "fixtures" / "release-0.1.0"  # runs, inputs and outputs of dltrain 0.1.0


@pytest.fixture
def run(tmp_path, cli):
    config = iris_config(tmp_path)
    result = cli("fit", config, "--out", tmp_path / "run")
    assert result.code == 0, result.output
    return tmp_path / "run"


def test_the_recipe_round_trips_through_a_file(run, tmp_path):
    saved = load(run)
    assert saved.state["format_version"] == FORMAT_VERSION
    checkpoint.save(tmp_path / "copy.pt", saved.recipe.to_dict(), {"model": saved.state["model"]})
    again = load(tmp_path / "copy.pt").recipe
    assert _same(again.to_dict(), saved.recipe.to_dict())
    assert again.layers == [{"Linear": 16}, "ReLU", {"Linear": "auto"}]
    assert again.input.shape == (4,) and again.loss.name == "CrossEntropyLoss"
    assert again.schema.target.classes == ["setosa", "versicolor", "virginica"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: nothing left beside it


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_run_rebuilds_from_its_checkpoint_alone(run, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(run / "best.pt", elsewhere / "model.pt")
    (tmp_path / "iris.csv").unlink()
    (tmp_path / "config.yaml").unlink()
    shutil.rmtree(run)
    monkeypatch.chdir(elsewhere)
    loaded = load_run("model.pt")
    assert isinstance(loaded.model, torch.nn.Sequential) and not loaded.model.training
    assert loaded.task.classes == ("setosa", "versicolor", "virginica")
    x = torch.zeros(3, 4)
    assert loaded.model(x).shape == (3, 3)


@pytest.mark.parametrize("name", ["penguins", "diabetes"])
def test_a_run_of_the_0_1_0_release_predicts_as_it_did(name, tmp_path, cli):
    """Checkpoints of format 1, whose training data (at /tmp/fixture) is long gone."""
    shutil.copytree(RELEASE / name, tmp_path / name)
    out = tmp_path / "predictions.csv"
    result = cli("predict", tmp_path / name, RELEASE / f"{name}_new.csv", "--output", out)
    assert result.code == 0, result.output
    expected = pd.read_csv(RELEASE / f"{name}_predictions.csv")
    actual = pd.read_csv(out)
    if "row" not in expected.columns:  # 0.1.0 named no rows; predict now numbers them when no id does
        assert list(actual["row"]) == list(range(len(actual)))
        actual = actual.drop(columns="row")
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["penguins", "diabetes"])
def test_a_run_of_the_0_1_0_release_evaluates_as_it_did(name, tmp_path, cli):
    shutil.copytree(RELEASE / name, tmp_path / name)
    result = cli("evaluate", tmp_path / name, "--data", ROOT / "data" / f"{name}.csv", "--json")
    assert result.code == 0, result.output
    expected = json.loads((RELEASE / f"{name}_evaluate.json").read_text())
    actual = json.loads(result.stdout)
    assert actual["rows"] == expected["rows"]
    # the metrics it reported then, as they were (evaluate reports more now: balanced_accuracy, macro_f1)
    assert {k: actual["metrics"][k] for k in expected["metrics"]} == pytest.approx(expected["metrics"], rel=1e-5)
    assert actual.get("confusion_matrix") == expected.get("confusion_matrix")


def test_a_newer_format_names_its_version_and_what_to_do(run, tmp_path):
    state = torch.load(run / "best.pt", weights_only=True)
    state.update(format_version=FORMAT_VERSION + 1, dltrain_version="9.0.0")
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=rf"newer dltrain \(9.0.0, checkpoint format {FORMAT_VERSION + 1}.*upgrade dltrain"):
        load(tmp_path / "future.pt")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda s: s.pop("architecture"), "has no architecture"),
        (lambda s: s.update(format_version="2"), "not a number"),
        (lambda s: s.update(format="something-else"), "no 'dltrain-checkpoint' marker"),
        (lambda s: s["architecture"].update(layers=[{"Linear": 16}, "ReLU", {"Linear": 5}]), "does not rebuild its model"),
        (lambda s: s["loss"].update(name="NoSuchLoss"), "does not rebuild its model"),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_refusal(run, tmp_path, cli, change, fragment):
    state = torch.load(run / "best.pt", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "bad.pt")
    result = cli("predict", tmp_path / "bad.pt", tmp_path / "iris.csv")
    assert result.code == 2 and fragment in result.stderr, result.output
    assert "Traceback" not in result.output


def test_a_run_without_best_uses_last_and_a_folder_without_either_says_so(run, tmp_path):
    (run / "best.pt").unlink()
    assert load(run).path.name == "last.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no best.pt in this folder"):
        load(tmp_path / "empty")

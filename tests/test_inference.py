"""evaluate, predict and export start from the run's checkpoint alone: a run stands alone."""

import io
import json
import shutil

import pandas as pd
import pytest
import torch

from tests.conftest import iris_config


@pytest.fixture
def moved(tmp_path, cli, monkeypatch):
    """A run trained in one folder, its outputs taken there, then the run copied to another folder,
    its config and data deleted and the current folder changed."""
    origin = tmp_path / "origin"
    origin.mkdir()
    monkeypatch.chdir(origin)
    config = iris_config(origin)
    assert cli("fit", config, "train.epochs=5", "--out", "run").code == 0
    table = pd.read_csv(origin / "iris.csv")
    table.drop(columns="species").iloc[::7].to_csv(tmp_path / "rows.csv", index=False)
    table.iloc[::3].to_csv(tmp_path / "labelled.csv", index=False)
    before = {
        "predict": _predict(cli, origin / "run", tmp_path / "rows.csv", tmp_path / "before.csv"),
        "evaluate": _evaluate(cli, origin / "run", tmp_path / "labelled.csv"),
        "export": _export(cli, origin / "run", tmp_path / "before_export"),
    }
    shutil.copytree(origin / "run", tmp_path / "copied")
    shutil.rmtree(origin)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path, before


def _predict(cli, run, rows, out):
    result = cli("predict", run, rows, "--output", out)
    assert result.code == 0, result.output
    return pd.read_csv(out)


def _evaluate(cli, run, labelled):
    result = cli("evaluate", run, "--data", labelled, "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def _export(cli, run, folder):
    result = cli("export", run, "--format", "torchscript", "-o", folder)
    assert result.code == 0, result.output
    model = torch.jit.load(folder / "model.torchscript.pt")
    return model(torch.linspace(-2, 2, 40).reshape(10, 4)).detach(), json.loads((folder / "encoders.json").read_text())


def test_a_moved_run_without_its_data_predicts_the_same(moved, cli):
    tmp_path, before = moved
    after = _predict(cli, tmp_path / "copied", tmp_path / "rows.csv", tmp_path / "after.csv")
    pd.testing.assert_frame_equal(after, before["predict"])


def test_a_moved_run_without_its_data_evaluates_a_file_the_same(moved, cli):
    tmp_path, before = moved
    after = _evaluate(cli, tmp_path / "copied", tmp_path / "labelled.csv")
    assert "baselines" in before["evaluate"] and "baselines" not in after  # they are fitted on the train split, gone with the data
    assert after == {k: v for k, v in before["evaluate"].items() if k != "baselines"}
    assert (tmp_path / "copied" / "evaluate_labelled.json").is_file()


def test_a_moved_run_without_its_data_exports_the_same(moved, cli):
    tmp_path, before = moved
    outputs, encoders = _export(cli, tmp_path / "copied", tmp_path / "after_export")
    assert torch.equal(outputs, before["export"][0])
    assert encoders == before["export"][1]


def test_a_moved_run_says_its_own_split_needs_the_training_data(moved, cli):
    tmp_path, _ = moved
    result = cli("evaluate", tmp_path / "copied")
    assert result.code == 2
    assert "iris.csv is gone" in result.stderr and "--data FILE" in result.stderr


def test_a_moved_run_starts_a_new_run_with_init_from(moved, cli):
    tmp_path, _ = moved
    config = iris_config(tmp_path / "elsewhere")
    result = cli("fit", config, "train.epochs=1", "--init-from", tmp_path / "copied", "--out", "new")
    assert result.code == 0, result.output
    assert "initialized 4 of 4 tensors" in result.stderr


def test_predict_and_evaluate_of_image_files_need_only_the_run(tmp_path, cli, monkeypatch):
    """A run of an image folder predicts new files after its own images are gone."""
    from PIL import Image

    def draw(folder, n, offset=0):
        for label, colour in (("dark", 30), ("light", 220)):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("L", (8, 8), colour + (i % 5) - 2).save(folder / label / f"{offset + i}.png")

    draw(tmp_path / "train", 12)
    draw(tmp_path / "labelled", 4, offset=100)
    config = tmp_path / "images.yaml"
    config.write_text(
        "data:\n  source: train\n  split: {train: 0.75, val: 0.25}\n  batch_size: 8\n"
        "model:\n  layers: [Flatten, {Linear: 8}, ReLU, {Linear: auto}]\n"
        "loss: CrossEntropyLoss\noptimizer: {type: Adam, lr: 0.05}\ntrain: {epochs: 8}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cli("fit", config, "--out", "run").code == 0
    shutil.rmtree(tmp_path / "train")
    config.unlink()
    predicted = cli("predict", "run", "labelled/light")
    assert predicted.code == 0, predicted.output
    rows = pd.read_csv(io.StringIO(predicted.stdout))
    assert len(rows) == 4 and (rows["prediction"] == "light").mean() >= 0.75


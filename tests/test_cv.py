"""dltrain cv: stratified folds on iris, plain k-fold on a number, and its bad inputs."""

from __future__ import annotations

import json

import pandas as pd

import dltrain
from tests.conftest import iris_config, write


def test_cv_on_iris_gives_a_run_per_fold_and_out_of_fold_predictions(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path, **{"epochs: 3": "epochs: 30"})
    result = cli("cv", config, "--folds", "3", "--out", tmp_path / "cv")
    assert result.code == 0, result.output
    assert "test accuracy:" in result.stdout
    folder = tmp_path / "cv"
    for k in (1, 2, 3):
        assert (folder / f"fold-{k}" / "best.pt").is_file() and (folder / f"fold-{k}" / "config.yaml").is_file()
    summary = json.loads((folder / "cv.json").read_text())
    accuracy = summary["metrics"]["accuracy"]
    assert summary["folds"] == 3 and len(accuracy["folds"]) == 3
    assert accuracy["mean"] >= 0.85 and 0 <= accuracy["std"] < 0.2
    oof = pd.read_csv(folder / "oof.csv")
    assert sorted(oof["row"]) == list(range(150))  # every row once
    assert {"fold", "target", "prediction", "prob_setosa", "prob_versicolor", "prob_virginica"} <= set(oof.columns)
    counts = oof.groupby(["target", "fold"]).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1  # stratified
    test_rows = json.loads((folder / "fold-2" / "data.json").read_text())["indices"]["test"]
    assert sorted(test_rows) == sorted(oof.loc[oof["fold"] == 2, "row"])
    assert pd.read_csv(tmp_path / "iris.csv").shape == (150, 5)  # the user's table as it was

    # predict on the cv folder: the folds' models together, each with its own encoders
    rows = pd.read_csv(tmp_path / "iris.csv").drop(columns="species")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    together = cli("predict", folder, tmp_path / "rows.csv", "-o", tmp_path / "together.csv")
    assert together.code == 0, together.output
    ensemble = pd.read_csv(tmp_path / "together.csv")
    folds = [dltrain.predict(folder / f"fold-{k}", rows) for k in (1, 2, 3)]
    probs = ["prob_setosa", "prob_versicolor", "prob_virginica"]
    assert list(ensemble.columns) == list(folds[0].columns)
    mean = sum(f[probs].to_numpy() for f in folds) / 3
    assert abs(ensemble[probs].to_numpy() - mean).max() < 1e-6
    assert (ensemble["prediction"].to_numpy() == pd.Series(mean.argmax(1)).map(dict(enumerate(c[5:] for c in probs))).to_numpy()).all()
    assert (ensemble["prediction"] == pd.read_csv(tmp_path / "iris.csv")["species"]).mean() >= 0.9
    refused = cli("evaluate", folder)
    assert refused.code == 2 and "a dltrain cv folder, not a run" in refused.stderr and "cv.json" in refused.stderr


def test_cv_on_a_number_is_plain_k_fold(tmp_path, cli, monkeypatch, root):
    monkeypatch.chdir(tmp_path)
    config = write(
        tmp_path / "mass.yaml",
        f"""\
data:
  source: {root / "data" / "penguins.csv"}
  target: body_mass_g
  inputs: [bill_length_mm, bill_depth_mm, flipper_length_mm]
model:
  layers: [{{Linear: 8}}, ReLU, {{Linear: auto}}]
loss: mse
optimizer: {{type: Adam, lr: 0.01}}
train: {{epochs: 3}}
""",
    )
    result = cli("cv", config, "--folds", "2", "--out", tmp_path / "cv")
    assert result.code == 0, result.output
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv")
    assert len(oof) == len(set(oof["row"])) and oof["fold"].value_counts().max() - oof["fold"].value_counts().min() <= 1
    assert set(json.loads((tmp_path / "cv" / "cv.json").read_text())["metrics"]) >= {"mae", "rmse", "r2"}
    rows = pd.read_csv(root / "data" / "penguins.csv").head(20)
    together = dltrain.predict(tmp_path / "cv", rows)["prediction"].to_numpy()
    folds = [dltrain.predict(tmp_path / "cv" / f"fold-{k}", rows)["prediction"].to_numpy() for k in (1, 2)]
    assert abs(together - (folds[0] + folds[1]) / 2).max() < 1e-6 * abs(together).max()
    (tmp_path / "cv" / "fold-2" / "best.pt").unlink()
    broken = cli("predict", tmp_path / "cv", root / "data" / "penguins.csv")
    assert broken.code == 2 and "fold-2 has no best.pt" in broken.stderr


def test_cv_bad_input_is_exit_2(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path)
    result = cli("cv", config, "--folds", "1")
    assert result.code == 2 and "--folds 1" in result.output
    result = cli("cv", config, "--folds", "60")
    assert result.code == 2 and "--folds 60" in result.output and "50 row(s)" in result.output
    assert not (tmp_path / "runs").exists()
    (tmp_path / "a.csv").write_text((tmp_path / "iris.csv").read_text())
    files = iris_config(tmp_path, **{"  source: iris.csv\n": "", "split: {train: 0.7, val: 0.15, test: 0.15}": "split: {train: a.csv, val: iris.csv}"})
    result = cli("cv", files, "--folds", "3")
    assert result.code == 2 and "data.split" in result.output

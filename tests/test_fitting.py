"""fit from Python: a new run, --resume (the one place that needs the training data), check."""

import json

import pandas as pd
import pytest

import dltrain
from dltrain.errors import ConfigError, UsageError
from tests.conftest import iris_config


@pytest.fixture
def stopped(tmp_path, monkeypatch):
    """A 2-epoch run of a 4-epoch schedule to continue, in tmp_path/run."""
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path)
    result = dltrain.fit(config, ["train.epochs=2"], out=tmp_path / "run", progress=False)
    assert result.run_dir == tmp_path / "run" and len(result.history) == 2
    return tmp_path


def test_a_fit_leaves_a_complete_run_directory(stopped):
    run = stopped / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "data.json", "metrics.csv", "best.pt", "last.pt"}
    data = json.loads((run / "data.json").read_text())
    assert sum(data["rows"].values()) == 150 and data["fingerprint"]
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def test_resume_with_the_data_gone_says_so(stopped, cli):
    (stopped / "iris.csv").unlink()
    result = cli("fit", "--resume", stopped / "run", "train.epochs=4")
    assert result.code == 2
    assert "its training data is gone" in result.stderr and "iris.csv not found" in result.stderr
    assert "--init-from" in result.stderr
    assert len(pd.read_csv(stopped / "run" / "metrics.csv")) == 2  # the run is as it was


def test_resume_with_changed_data_refuses_unless_asked(stopped, cli):
    table = pd.read_csv(stopped / "iris.csv")
    table.loc[:20, "sepal_length"] += 1.0
    table.to_csv(stopped / "iris.csv", index=False)
    refused = cli("fit", "--resume", stopped / "run", "train.epochs=4")
    assert refused.code == 2 and "its data changed since it was trained" in refused.stderr
    assert "--allow-changed-data" in refused.stderr
    allowed = cli("fit", "--resume", stopped / "run", "train.epochs=4", "--allow-changed-data")
    assert allowed.code == 0, allowed.output
    assert "continuing on it" in allowed.stderr
    assert len(pd.read_csv(stopped / "run" / "metrics.csv")) == 4


def test_allow_changed_data_goes_with_resume_only(stopped, cli):
    result = cli("fit", stopped / "config.yaml", "--allow-changed-data")
    assert result.code == 2 and "goes with --resume" in result.stderr


def test_resume_reads_its_config_from_the_checkpoint(stopped):
    """The config file the run came from may be edited or gone: --resume trains what the run was."""
    (stopped / "config.yaml").write_text("this: is not the config any more\n")
    result = dltrain.fit(resume=stopped / "run", overrides=["train.epochs=3"], progress=False)
    assert len(result.history) == 3


def test_fit_needs_a_config_or_resume_not_both(stopped):
    with pytest.raises(UsageError, match="not both"):
        dltrain.fit()
    with pytest.raises(UsageError, match="not both"):
        dltrain.fit(stopped / "config.yaml", resume=stopped / "run")


def test_check_builds_what_fit_would_train_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parts = dltrain.check(iris_config(tmp_path))
    assert parts.task.classes == ("setosa", "versicolor", "virginica")
    sizes = [len(parts.data.splits[s]) for s in ("train", "val", "test")]
    assert sizes[0] == 105 and sum(sizes) == 150 and min(sizes) > 0
    assert sum(p.numel() for p in parts.model.parameters()) == 4 * 16 + 16 + 16 * 3 + 3
    assert not (tmp_path / "runs").exists()


def test_a_data_error_in_fit_leaves_no_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path, **{"target: species": "target: no_such_column"})
    with pytest.raises(ConfigError, match=r"config.yaml:5: data.target: column .no_such_column. is not in"):
        dltrain.fit(config, progress=False)
    assert not (tmp_path / "runs").exists()

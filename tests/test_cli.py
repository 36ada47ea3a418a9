"""End to end: the commands a user types, on the shipped configs and on bad input."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, write

# Each shipped config and the bar its test split reaches (the README states the same figures).
BARS = [
    ("iris", "accuracy", 0.9),
    ("breast_cancer", "accuracy", 0.95),
    ("diabetes", "r2", 0.3),
    ("wine_sqlite", "accuracy", 0.9),
    ("penguins", "accuracy", 0.95),
]


@pytest.mark.parametrize(("name", "metric", "bar"), BARS)
def test_shipped_config_reaches_its_bar(workdir, cli, name, metric, bar):
    result = cli("fit", f"configs/{name}.yaml")
    assert result.code == 0, result.output
    for hint in ("Overfitting", "Underfitting", "Still learning", "Warning"):  # the examples as a newcomer sees them
        assert hint not in result.output, result.output
    run = workdir / "runs" / name
    assert f"Run directory: {run.relative_to(workdir)}" in result.stdout or str(run) in result.output
    for file in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "data.json"):
        assert (run / file).is_file()
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics[metric] >= bar, metrics
    saved = json.loads((run / "evaluate_test.json").read_text())
    assert saved["split"] == "test" and saved["metrics"][metric] == pytest.approx(metrics[metric])


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from dltrain.cli import app\n"
        "for args in (['--help'], ['check', '--help'], ['fit', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='dltrain')\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False")
    assert "evaluate" in result.stdout and "KEY=VALUE" in result.stdout


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "dltrain", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "fit" in result.stdout


def test_the_command_ends_with_its_exit_code_and_all_of_its_output(tmp_path):
    # main() ends the process without the interpreter's tear-down: the code and the output must survive it
    missing = subprocess.run([sys.executable, "-m", "dltrain", "fit", str(tmp_path / "nope.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "config file not found" in missing.stderr and "Traceback" not in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "dltrain", "fit", "--bogus"], capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and "No such option" in usage.stderr
    done = subprocess.run([sys.executable, "-m", "dltrain", "schema"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("}")  # flushed to the last byte


def test_settled_pauses_the_collector_and_freezes_what_was_made():
    import gc

    from dltrain.memory import settled

    before = gc.get_freeze_count()
    with settled():
        assert not gc.isenabled()
        made = [[i] for i in range(1000)]
    try:
        assert gc.isenabled() and gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()


def test_resume_reaches_the_same_weights_and_metrics(workdir, cli):
    assert cli("fit", "configs/penguins.yaml", "train.epochs=6", "--out", "whole").code == 0
    assert cli("fit", "configs/penguins.yaml", "train.epochs=3", "--out", "parts").code == 0
    resumed = cli("fit", "--resume", "parts", "train.epochs=6")
    assert resumed.code == 0, resumed.output
    whole = pd.read_csv(workdir / "whole" / "metrics.csv").drop(columns="seconds")
    parts = pd.read_csv(workdir / "parts" / "metrics.csv").drop(columns="seconds")
    assert len(parts) == 6
    pd.testing.assert_frame_equal(whole, parts)
    a = torch.load(workdir / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(workdir / "parts" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_keys_and_a_config(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "r").code == 0
    result = cli("fit", "--resume", "r", "optimizer.lr=0.1")
    assert result.code == 2 and "only train.* keys" in result.stderr
    both = cli("fit", "configs/iris.yaml", "--resume", "r")
    assert both.code == 2 and "--resume" in both.stderr
    neither = cli("fit")
    assert neither.code == 2 and "give a config file" in neither.stderr


def test_predict_gives_class_names_and_probabilities(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "--out", "r").code == 0
    table = pd.read_csv(workdir / "data" / "iris.csv")
    table.drop(columns="species").to_csv("rows.csv", index=False)
    result = cli("predict", "r", "rows.csv", "--output", "predictions.csv")
    assert result.code == 0, result.output
    predictions = pd.read_csv("predictions.csv")
    assert list(predictions.columns) == ["row", "prediction", "prob_setosa", "prob_versicolor", "prob_virginica"]
    assert list(predictions["row"]) == list(range(len(predictions)))  # each prediction names its input row, from 0
    assert set(predictions["prediction"]) <= {"setosa", "versicolor", "virginica"}
    sums = predictions.filter(like="prob_").sum(axis=1)
    assert sums.sub(1).abs().max() < 1e-5
    assert (predictions["prediction"] == table["species"]).mean() > 0.9
    to_stdout = cli("predict", "r", "rows.csv")
    assert to_stdout.stdout.splitlines()[0] == "row,prediction,prob_setosa,prob_versicolor,prob_virginica"


def test_predict_copies_the_id_and_decodes_regression(workdir, cli):
    assert cli("fit", "configs/diabetes.yaml", "train.epochs=5", "data.id=age", "--out", "r").code == 0
    predictions = cli("predict", "r", "data/diabetes.csv", "--output", "p.csv")
    assert predictions.code == 0, predictions.output
    frame = pd.read_csv("p.csv")
    assert list(frame.columns) == ["age", "prediction"]
    assert 50 < frame["prediction"].mean() < 250  # in the target's units, not standardized


def test_predict_never_writes_over_its_input_and_writes_the_suffixs_format(workdir, cli):
    assert cli("fit", "configs/penguins.yaml", "train.epochs=2", "--out", "r").code == 0
    table = pd.read_csv(workdir / "data" / "penguins.csv")
    table.to_parquet("rows.parquet")
    before = (workdir / "rows.parquet").read_bytes()
    refused = cli("predict", "r", "rows.parquet", "--output", "rows.parquet")
    assert refused.code == 2 and "that is the input file" in refused.stderr
    assert (workdir / "rows.parquet").read_bytes() == before
    assert cli("predict", "r", "rows.parquet", "--output", "p.parquet").code == 0
    assert len(pd.read_parquet("p.parquet")) == len(table)
    assert cli("predict", "r", "rows.parquet", "--output", "p.xlsx").code == 2
    # an earlier predictions file is written again; any other file is the user's and is kept
    assert cli("predict", "r", "rows.parquet", "--output", "p.parquet").code == 0
    table.to_csv("mine.csv", index=False)
    kept = cli("predict", "r", "rows.parquet", "--output", "mine.csv")
    assert kept.code == 2 and "is not an earlier output of this prediction" in " ".join(kept.stderr.split())
    assert pd.read_csv("mine.csv").equals(table)


def test_predict_warns_of_values_training_never_saw(workdir, cli):
    assert cli("fit", "configs/penguins.yaml", "train.epochs=2", "--out", "r").code == 0
    table = pd.read_csv(workdir / "data" / "penguins.csv").head(20).astype({"bill_length_mm": object, "bill_depth_mm": object})
    table.loc[:4, "island"] = "Atlantis"
    table.loc[5, "bill_length_mm"] = "?"
    table.loc[6, "bill_depth_mm"] = "n.a."
    table.to_csv("rows.csv", index=False)
    result = cli("predict", "r", "rows.csv", "--output", "p.csv")
    assert result.code == 0, result.output  # one bad cell never stops a prediction
    err = " ".join(result.stderr.split())
    assert "column 'island' has 5 value(s) that training never saw ('Atlantis'" in err
    assert "column 'bill_depth_mm' is numeric: 1 cell(s) of text ('n.a.') are read as missing values" in err
    assert len(pd.read_csv("p.csv")) == 20


def test_predict_names_missing_columns(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", "r").code == 0
    write(workdir / "rows.csv", "sepal_length,sepal_width\n1,2\n")
    result = cli("predict", "r", "rows.csv")
    assert result.code == 2
    assert "petal_length, petal_width" in result.stderr and "Traceback" not in result.output


def test_a_pickle_that_runs_code_is_refused(workdir, cli):
    marker = workdir / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = workdir / "evil"
    run.mkdir()
    torch.save({"format": "dltrain-checkpoint", "payload": Exploit()}, run / "best.pt")
    torch.save({"format": "dltrain-checkpoint", "payload": Exploit()}, run / "last.pt")
    for args in (("evaluate", run), ("predict", run, "data/iris.csv"), ("fit", "--resume", run), ("evaluate", run / "best.pt")):
        result = cli(*args)
        assert result.code == 2, (args, result.output)
        assert "refused to load" in result.stderr and "Traceback" not in result.output
    assert not marker.exists()


def test_foreign_and_truncated_checkpoints(workdir, cli):
    torch.save({"weights": torch.zeros(2)}, workdir / "foreign.pt")
    result = cli("evaluate", workdir / "foreign.pt")
    assert result.code == 2 and "not a dltrain checkpoint" in result.stderr
    assert cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", "r").code == 0
    data = (workdir / "r" / "best.pt").read_bytes()
    (workdir / "cut.pt").write_bytes(data[: len(data) // 2])
    result = cli("evaluate", workdir / "cut.pt")
    assert result.code == 2 and "not a readable checkpoint" in result.stderr
    (workdir / "text.pt").write_text("nope\n")  # no pickle at all: damaged, not a risk
    result = cli("evaluate", workdir / "text.pt")
    assert result.code == 2 and "not a readable checkpoint" in result.stderr and "refused" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.target=specie"], "column 'specie' is not in"),
        (["data.inputs=[sepal_length, petal_lenght]"], "Did you mean 'petal_length'"),
        (["loss=BCEWithLogitsLoss"], "BCEWithLogitsLoss and BCELoss are for two classes: use CrossEntropyLoss"),
        (["loss=mse"], "MSELoss does not fit: target 'species' is category"),
        (["model.layers.3.Linear=4"], "the model gives (batch, 4) per batch, but the loss and target need (batch, 3)"),
        (["data.source=missing.csv"], "file not found: 'missing.csv'"),
        (["optimizer.momentum=0.9"], "Adam has no argument 'momentum'"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(workdir, cli, overrides, fragment):
    for verb in ("check", "fit"):
        result = cli(verb, "configs/iris.yaml", *overrides)
        assert result.code == 2, result.output
        assert fragment in result.stderr.replace("\n", " ")
        assert "Traceback" not in result.output


def test_missing_column_lists_the_columns_that_exist(workdir, cli):
    config = workdir / "configs" / "iris.yaml"
    config.write_text(config.read_text().replace("target: species", "target: colour"))
    result = cli("check", "configs/iris.yaml")
    assert "configs/iris.yaml:9: data.target: column 'colour' is not in" in result.stderr.replace("\n", "")
    assert "Its columns: sepal_length, sepal_width, petal_length, petal_width, species" in result.stderr.replace("\n", "")


def test_loss_target_mismatch_numeric_target(workdir, cli):
    result = cli("check", "configs/diabetes.yaml", "loss=CrossEntropyLoss")
    assert result.code == 2
    assert "CrossEntropyLoss does not fit: target 'progression' is numeric" in result.stderr.replace("\n", "")


def test_empty_data_file(workdir, cli):
    write(workdir / "data" / "empty.csv", "")
    result = cli("fit", "configs/iris.yaml", "data.source=../data/empty.csv")
    assert result.code == 2 and "the file is empty" in result.stderr


def test_header_only_data_file(workdir, cli):
    write(workdir / "data" / "header.csv", "a,b,species\n")
    result = cli("check", "configs/iris.yaml", "data.source=../data/header.csv")
    assert result.code == 2 and "no rows" in result.stderr


def test_softmax_before_cross_entropy_warns(workdir, cli):
    result = cli("check", "configs/iris.yaml", "model.layers=[{Linear: 8}, ReLU, {Linear: auto}, {Softmax: {dim: 1}}]")
    assert result.code == 0, result.output
    assert "the last layer is Softmax, but CrossEntropyLoss applies softmax itself" in result.stderr.replace("\n", " ")


def test_check_prints_data_model_and_training(workdir, cli):
    result = cli("check", "configs/penguins.yaml")
    assert result.code == 0, result.output
    out = result.stdout
    assert "train 241" in out and "val 52" in out and "test 51" in out
    assert "11 filled" in out  # sex is missing in 11 rows
    assert "(batch, 10)" in out and "(batch, 3)" in out
    assert "parameters: 9,219" in out  # the residual block: 64 -> 64 -> 64
    assert "AdamW(lr=0.003)" in out
    assert not (workdir / "runs").exists()


def test_init_from_loads_matching_tensors(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "a").code == 0
    # learning rate 0: b keeps exactly the weights it started from
    result = cli("fit", "configs/iris.yaml", "train.epochs=1", "model.layers.0.Linear=8", "optimizer.lr=0", "--init-from", "a", "--out", "b")
    assert result.code == 0, result.output
    assert "skipped" in result.stderr and "0.weight" in result.stderr
    a = torch.load(workdir / "a" / "best.pt", weights_only=True)["model"]
    b = torch.load(workdir / "b" / "last.pt", weights_only=True)["model"]
    assert torch.equal(a["3.bias"], b["3.bias"])  # the head fits and was loaded
    assert b["0.weight"].shape == (8, 4)  # the resized first layer was skipped
    # no tensor fits: exit 2, and the run directory it had announced is said to be gone
    nothing = cli("fit", "configs/penguins.yaml", "--init-from", "a")
    assert nothing.code == 2 and "no tensor of that model fits this one" in nothing.stderr, nothing.output
    assert "run directory: runs/penguins" in nothing.stderr and "runs/penguins removed: the fit stopped before its first epoch" in nothing.stderr
    assert not (workdir / "runs" / "penguins").exists()


def test_run_directories_are_never_reused(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "train.epochs=1").code == 0
    assert cli("fit", "configs/iris.yaml", "train.epochs=1").code == 0
    assert (workdir / "runs" / "iris").is_dir() and (workdir / "runs" / "iris-2").is_dir()
    result = cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", "runs/iris")
    assert result.code == 2 and "not empty" in result.stderr


def test_run_config_is_complete_and_reusable(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "optimizer.lr=0.02", "--out", "r").code == 0
    text = (workdir / "r" / "config.yaml").read_text()
    assert str(workdir / "data" / "iris.csv") in text
    assert "lr: 0.02" in text and "Linear: auto" in text and "early_stopping" not in text and "monitor: val_loss" in text
    again = cli("fit", workdir / "r" / "config.yaml", "--out", "again")
    assert again.code == 0, again.output
    data = json.loads((workdir / "r" / "data.json").read_text())
    assert data["rows"] == {"train": 105, "val": 23, "test": 22}
    assert sorted(data["indices"]["train"] + data["indices"]["val"] + data["indices"]["test"]) == list(range(150))


def test_evaluate_on_a_file_and_warns_when_the_data_changed(workdir, cli):
    assert cli("fit", "configs/iris.yaml", "--out", "r").code == 0
    table = pd.read_csv(workdir / "data" / "iris.csv")
    table.iloc[:40].to_csv("labelled.csv", index=False)
    result = cli("evaluate", "r", "--data", "labelled.csv", "--json")
    assert result.code == 0, result.output
    report = json.loads((workdir / "r" / "evaluate_labelled.json").read_text())
    assert report["rows"] == 40 and sum(map(sum, report["confusion_matrix"]["matrix"])) == 40
    table.loc[0, "sepal_length"] = 9.9
    table.to_csv(workdir / "data" / "iris.csv", index=False)
    changed = cli("evaluate", "r")
    assert changed.code == 2 and "its data changed since it was trained" in changed.stderr
    allowed = cli("evaluate", "r", "--allow-changed-data")
    assert allowed.code == 0 and "the data of this run changed since it was trained" in allowed.stderr
    missing = cli("evaluate", "r", "--split", "train", "--data", "nowhere.csv")
    assert missing.code == 2 and "nowhere.csv: file not found" in missing.stderr


# ----- what runs only when trained: said by check, and by fit before a run directory exists


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("loss={type: CrossEntropyLoss, weight: [1, 2]}", "loss", "weight tensor should be defined"),
        ("loss={type: CrossEntropyLoss, reduction: none}", "loss", "not one number to minimize"),
        ("loss={type: CrossEntropyLoss, label_smoothing: 2}", "loss", "label_smoothing"),
        ("loss={type: CrossEntropyLoss, weight: abc}", "loss", "weight"),
        ("optimizer={type: LBFGS}", "optimizer", "closure"),
        ("optimizer={type: Adam, betas: [0.9]}", "optimizer", "Adam"),
        ("scheduler={type: CosineAnnealingLR, T_max: 0}", "scheduler", "CosineAnnealingLR"),
        ("scheduler={type: StepLR, step_size: abc}", "scheduler", "StepLR"),
        ("model.layers=[{Linear: 8}, BatchNorm1d, ReLU, {Linear: auto}]", "model.layers", "more than 1 value per channel"),
    ],
)
def test_what_fails_only_when_run_is_found_before_training(workdir, cli, override, key, fragment):
    extra = ["data.batch_size=1"] if "BatchNorm1d" in override else []
    checked = cli("check", "configs/iris.yaml", override, *extra)
    assert checked.code == 2 and "Traceback" not in checked.output
    message = " ".join(checked.stderr.split())
    assert f"command line: {key}:" in message and fragment in message, message
    fitted = cli("fit", "configs/iris.yaml", override, *extra)
    assert fitted.code == 2 and not (workdir / "runs").exists()  # no half-made run directory


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("check", "configs/iris.yaml", "optimizer.lr=.nan"), "Invalid learning rate: nan"),
        (("check", "configs/iris.yaml", "seed=-1"), "seed: expected a number of at least 0"),
        (("check", "configs/iris.yaml", "name=../../elsewhere"), "expected a folder name for the run"),
        (("evaluate", "data/iris.csv"), "not a readable checkpoint"),
        (("fit", "configs/iris.yaml", "--out", "configs/iris.yaml"), "a file, not a folder"),
        (("runs", "nowhere"), "no such folder"),
    ],
)
def test_bad_arguments_are_exit_2_with_a_message(workdir, cli, args, fragment):
    result = cli(*args)
    assert result.code == 2, result.output
    assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.output


def test_an_infinite_number_names_its_column(workdir, cli):
    table = pd.read_csv("data/iris.csv")
    table.loc[3, "sepal_width"] = float("inf")
    table.to_csv("data/iris.csv", index=False)
    result = cli("check", "configs/iris.yaml")
    assert result.code == 2 and "column 'sepal_width' holds 1 value(s) that are infinite" in " ".join(result.stderr.split())


def test_a_self_containing_yaml_alias_is_a_message(workdir, cli):
    write(workdir / "loop.yaml", "a: &x [*x]\n")
    result = cli("check", "loop.yaml")
    assert result.code == 2 and "an alias that contains itself" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.layers.0.Linear=abc", "model.layers.0: Linear: argument 'out_features' takes a whole number, found 'abc'"),
        ("optimizer.betas=0.9", "optimizer: Adam: argument 'betas' takes a list, found 0.9"),
        ("optimizer.weight_decay=abc", "optimizer: Adam: argument 'weight_decay' takes a number, found 'abc'"),
    ],
)
def test_an_argument_of_the_wrong_kind_names_it_and_what_it_takes(workdir, cli, override, message):
    result = cli("check", "configs/iris.yaml", override)
    assert result.code == 2 and f"command line: {message}" in " ".join(result.stderr.split())


def test_non_finite_arguments_and_empty_paths_are_said_before_training(workdir, cli, tmp_path):
    weight = cli("fit", "configs/iris.yaml", "loss={type: CrossEntropyLoss, weight: [1, 2, .nan]}")
    assert weight.code == 2 and "its weight holds nan or infinite values" in weight.stderr
    rate = cli("fit", "configs/iris.yaml", "optimizer.lr=.inf")
    assert rate.code == 2 and "made the weights nan or infinite" in " ".join(rate.stderr.split())
    cycle = cli("check", "configs/iris.yaml", "scheduler={type: OneCycleLR, max_lr: 0.1, total_steps: 3, interval: step}")
    assert cycle.code == 2 and "total_steps 3 is less than" in " ".join(cycle.stderr.split())
    assert not (workdir / "runs").exists()

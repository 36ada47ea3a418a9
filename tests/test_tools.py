"""init, schema, layers, plot, runs, export: the commands around fit."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.config.yaml import load_yaml
from tests.conftest import ROOT

# ----- init


@pytest.mark.parametrize(
    ("table", "target", "metric", "bar"),
    [
        ("iris.csv", "species", "accuracy", 0.85),
        ("breast_cancer.csv", "diagnosis", "accuracy", 0.9),
        ("diabetes.csv", "progression", "r2", 0.05),  # least squares reaches 0.17 on its test rows
        ("penguins.csv", "species", "accuracy", 0.9),
    ],
)
def test_init_writes_a_config_that_fit_trains(workdir, cli, table, target, metric, bar):
    made = cli("init", f"data/{table}", "--target", target, "-o", "configs/started.yaml")
    assert made.code == 0, made.output
    text = (workdir / "configs" / "started.yaml").read_text()
    assert text.count("#") >= 8  # commented key by key
    result = cli("fit", "configs/started.yaml", "--out", "run")
    assert result.code == 0, result.output
    evaluated = json.loads(cli("evaluate", "run", "--json").stdout)
    assert evaluated["metrics"][metric] >= bar, evaluated
    again = cli("init", f"data/{table}", "--target", target, "-o", "configs/started.yaml")
    assert again.code == 2 and "never writes over a file" in again.stderr


def test_init_leaves_out_ids_and_says_why(workdir, cli):
    result = cli("init", "data/breast_cancer.csv", "--target", "diagnosis")
    assert result.code == 0
    assert "# - patient_id            left out: a different value in every row, so an id" in result.stdout
    assert "{column: mean_radius, type: numeric}" in result.stdout


def test_init_for_an_image_folder(tmp_path, cli, monkeypatch):
    from tests.test_images import make_shapes

    make_shapes(tmp_path / "shapes", 60)
    monkeypatch.chdir(tmp_path)
    assert cli("init", "shapes", "-o", "shapes.yaml").code == 0
    text = (tmp_path / "shapes.yaml").read_text()
    assert "type: image, size: [32, 32], channels: 3" in text and "Conv2d" in text
    result = cli("fit", "shapes.yaml", "train.epochs=12", "--out", "run")
    assert result.code == 0, result.output
    assert json.loads(cli("evaluate", "run", "--json").stdout)["metrics"]["accuracy"] >= 0.6


def test_init_on_a_messy_table_keeps_the_signal_and_leaves_out_the_rest(tmp_path, cli, monkeypatch):
    rng = np.random.default_rng(0)
    n = 400
    spend = rng.gamma(2.0, 800.0, n)
    table = pd.DataFrame({
        "customer": [f"C-{i:05d}" if i != 7 else None for i in range(n)],  # an id with a gap
        "signup": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        "city": [f"city_{v}" for v in rng.integers(0, 300, n)],  # too many values to one-hot
        "spend": [f"{v:,.2f}" if i % 50 else "?" for i, v in enumerate(spend)],  # thousands separators, '?'
        "plan": rng.choice(["basic", "plus", "pro"], n),
        "left": np.where(spend + rng.normal(0, 300, n) > 1600, "yes", "no"),
    })  # fmt: skip
    table["signup"] = table["signup"].dt.strftime("%Y-%m-%d")
    table.to_csv(tmp_path / "customers.csv", index=False)
    monkeypatch.chdir(tmp_path)
    made = cli("init", "customers.csv", "--target", "left", "-o", "c.yaml")
    assert made.code == 0, made.output
    text = (tmp_path / "c.yaml").read_text()
    assert "{column: spend, type: numeric}" in text and "{column: plan, type: category}" in text
    assert "# - customer" in text and "id: customer" in text
    assert "{column: signup, type: date}" in text  # the year and the cycles of the calendar
    assert "# - city" in text and "distinct values, one-hot would add" in text
    result = cli("fit", "c.yaml", "--out", "run")
    assert result.code == 0, result.output
    assert json.loads(cli("evaluate", "run", "--json").stdout)["metrics"]["accuracy"] >= 0.85
    predicted = cli("predict", "run", "customers.csv", "-o", "p.csv")
    assert predicted.code == 0 and list(pd.read_csv(tmp_path / "p.csv").columns)[:2] == ["customer", "prediction"]


def test_init_on_a_table_of_image_paths_of_several_sizes(tmp_path, cli, monkeypatch):
    from PIL import Image

    rows = []
    for i in range(60):
        label = ["dark", "light"][i % 2]
        size = [(40, 30), (50, 50), (64, 48)][i % 3]
        Image.new("L" if i % 4 else "RGB", size, (30 if label == "dark" else 220) if i % 4 else (30,) * 3 if label == "dark" else (220,) * 3).save(tmp_path / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": label, "camera": "x"})
    pd.DataFrame(rows).to_csv(tmp_path / "photos.csv", index=False)
    monkeypatch.chdir(tmp_path)
    made = cli("init", "photos.csv", "--target", "label", "-o", "p.yaml")
    assert made.code == 0, made.output
    text = (tmp_path / "p.yaml").read_text()
    assert "{column: file, type: image, size: [" in text and "channels: 3" in text and "Conv2d" in text
    assert "# - {column: camera" in text
    result = cli("fit", "p.yaml", "train.epochs=5", "--out", "run")
    assert result.code == 0, result.output


def test_init_needs_a_target_for_a_table(workdir, cli):
    result = cli("init", "data/iris.csv")
    assert result.code == 2 and "--target COLUMN" in result.stderr and "species" in result.stderr


# ----- schema


@pytest.fixture(scope="module")
def schema():
    from dltrain.tools.schema import config_schema

    return config_schema()


def test_every_shipped_config_validates_against_the_schema(schema):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        value, _ = load_yaml(path.read_text(), str(path))
        errors = list(validator.iter_errors(value))
        assert not errors, (path.name, [e.message for e in errors[:3]])
        assert path.read_text().startswith("# yaml-language-server: $schema=../schema/dltrain.schema.json")


@pytest.mark.parametrize(
    "mistake",
    [
        lambda c: c["data"].update(batch_sise=3),
        lambda c: c["model"]["layers"].append("Relu"),
        lambda c: c["model"]["layers"].append({"Linear": {"out_feature": 3}}),
        lambda c: c.update(optimizer={"type": "Adamm"}),
        lambda c: c["train"].update(monitor="val_acuracy"),
    ],
)
def test_a_wrong_config_fails_the_schema(schema, mistake):
    jsonschema = pytest.importorskip("jsonschema")
    value, _ = load_yaml((ROOT / "configs" / "iris.yaml").read_text(), "iris.yaml")
    mistake(value)
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(value))


def test_the_committed_schema_is_the_generated_one(cli):
    result = cli("schema")
    assert result.code == 0
    committed = (ROOT / "schema" / "dltrain.schema.json").read_text()
    assert json.loads(result.stdout) == json.loads(committed), "regenerate it: dltrain schema -o schema/dltrain.schema.json"


# ----- layers


def test_layers_lists_every_registry_entry(cli):
    from dltrain.model.registry import layer_registry

    result = cli("layers")
    assert result.code == 0
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip() and not line.startswith((" ", "━", "─"))}
    missing = [n for n in layer_registry().names() if n not in result.stdout]
    assert not missing
    assert "Linear" in names or "Linear" in result.stdout


def test_one_layer_in_full(cli):
    result = cli("layers", "Conv2d")
    assert result.code == 0
    assert "in_channels" in result.stdout and "inferred: the channels of the layer before" in result.stdout
    assert "kernel_size" in result.stdout and "required" in result.stdout
    assert cli("layers", "Conv2D").code == 2


# ----- plot and runs


@pytest.mark.curves
def test_plot_draws_the_curves_of_several_runs(workdir, cli):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from dltrain.tools.plot import plot, wait_for_curves

    assert cli("fit", "configs/iris.yaml", "train.epochs=4", "--out", "a").code == 0
    assert cli("fit", "configs/penguins.yaml", "train.epochs=4", "--out", "b").code == 0
    assert wait_for_curves(workdir / "a")  # fit leaves one, drawn by a process of its own
    assert not list((workdir / "a").glob(".*.tmp"))  # written whole, then renamed
    result = plot([workdir / "a", workdir / "b"], workdir / "both.png")
    assert result.curves == 3 + 3  # train and val loss, and val_accuracy (iris monitors val_loss, penguins val_accuracy)
    image = np.asarray(Image.open(workdir / "both.png").convert("L"))
    assert image.shape == (420, 1100)
    assert image.std() > 10  # not blank
    assert cli("plot", "a", "b", "-o", "cli.png").code == 0 and (workdir / "cli.png").is_file()
    assert cli("plot", "nowhere").code == 2


def test_runs_lists_best_results_best_first(workdir, cli):
    for epochs, out in ((1, "runs/short"), (6, "runs/long")):
        assert cli("fit", "configs/iris.yaml", f"train.epochs={epochs}", "--out", out).code == 0
    assert cli("evaluate", "runs/long").code == 0
    result = cli("runs")
    assert result.code == 0
    lines = [line for line in result.stdout.splitlines() if "val_loss" in line]
    assert lines[0].split()[0] == "long" and lines[1].split()[0] == "short"
    assert " acc " in lines[0] and " bal_acc " in lines[0]  # the two main test figures, short, on one line
    assert max(map(len, result.stdout.splitlines())) <= 100 and "precision" not in result.stdout


# ----- export


@pytest.mark.parametrize("format", ["torchscript", "export"])
def test_exported_models_give_the_checkpoints_outputs(workdir, cli, format):
    from dltrain.checkpoint import load_run
    from dltrain.data.prepare import rebuild

    assert cli("fit", "configs/penguins.yaml", "train.epochs=3", "--out", "run").code == 0
    result = cli("export", "run", "--format", format)
    assert result.code == 0, result.output
    loaded = load_run(workdir / "run")
    test = rebuild(loaded.recipe.data, loaded.schema, loaded.task.form, ("test",))["test"]
    expected = loaded.model(test.x)
    if format == "torchscript":
        model = torch.jit.load(workdir / "run" / "export" / "model.torchscript.pt")
    else:
        model = torch.export.load(str(workdir / "run" / "export" / "model.pt2")).module()
    assert torch.allclose(model(test.x), expected, atol=1e-5)
    description = json.loads((workdir / "run" / "export" / "encoders.json").read_text())
    assert description["output"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert description["encoders"]["inputs"][0]["column"] == "island"


def test_onnx_export_runs_in_onnxruntime(workdir, cli):
    runtime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dltrain.checkpoint import load_run
    from dltrain.data.prepare import rebuild

    assert cli("fit", "configs/penguins.yaml", "train.epochs=3", "--out", "run").code == 0
    result = cli("export", "run", "--format", "onnx")
    assert result.code == 0, result.output
    loaded = load_run(workdir / "run")
    test = rebuild(loaded.recipe.data, loaded.schema, loaded.task.form, ("test",))["test"]
    expected = loaded.model(test.x).detach().numpy()
    session = runtime.InferenceSession(str(workdir / "run" / "export" / "model.onnx"))
    (actual,) = session.run(None, {"input": test.x.numpy()})
    assert np.allclose(actual, expected, atol=1e-5)
    assert pd.read_json(workdir / "run" / "export" / "encoders.json", typ="series")["format"] == "onnx"


def test_plot_and_schema_never_write_over_a_users_file(workdir, cli):
    from PIL import Image

    pytest.importorskip("matplotlib")
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "a").code == 0
    Image.new("RGB", (8, 8), "red").save(workdir / "photo.png")
    before = (workdir / "photo.png").read_bytes()
    refused = cli("plot", "a", "-o", "photo.png")
    assert refused.code == 2 and "was not drawn by dltrain plot" in refused.stderr
    assert (workdir / "photo.png").read_bytes() == before
    assert cli("plot", "a", "-o", "mine.png").code == 0 and cli("plot", "a", "-o", "mine.png").code == 0  # its own picture again
    (workdir / "notes.json").write_text('{"mine": true}')
    assert cli("schema", "-o", "notes.json").code == 2 and (workdir / "notes.json").read_text() == '{"mine": true}'
    assert cli("schema", "-o", "s.json").code == 0 and cli("schema", "-o", "s.json").code == 0

"""What the README's first hour does: a config written by init into configs/ passes the schema
test as the shipped ones do, and validates against the committed schema."""

from __future__ import annotations

import json

import yaml


def test_init_into_configs_writes_the_schema_line_the_shipped_configs_have(workdir, cli, root):
    (workdir / "schema").mkdir()
    (workdir / "schema" / "dltrain.schema.json").write_text((root / "schema" / "dltrain.schema.json").read_text())
    made = cli("init", "data/penguins.csv", "--target", "species", "-o", "configs/mine.yaml")
    assert made.code == 0, made.output
    text = (workdir / "configs" / "mine.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../schema/dltrain.schema.json\n")
    import jsonschema

    jsonschema.validate(yaml.safe_load(text), json.loads((workdir / "schema" / "dltrain.schema.json").read_text()))
    elsewhere = cli("init", "data/penguins.csv", "--target", "species", "-o", "deep/down/other.yaml")
    assert (workdir / "deep" / "down" / "other.yaml").read_text().startswith("# yaml-language-server: $schema=../../schema/dltrain.schema.json\n")
    assert elsewhere.code == 0


def test_checks_model_table_counts_layers_as_overrides_and_errors_do(workdir, cli):
    shown = cli("check", "configs/iris.yaml")
    assert shown.code == 0, shown.output
    first = next(line for line in shown.stdout.splitlines() if "Linear" in line)
    assert first.split()[0] == "0"  # the layer model.layers.0 names
    wrong = cli("check", "configs/iris.yaml", "model.layers.0.Linear=abc")
    assert wrong.code == 2 and "model.layers.0" in wrong.stderr


def test_fit_ends_with_commands_that_run_as_printed(workdir, cli):
    """Its evaluate line fits the run's splits, and its predict output is named for the run, so the
    README's second example does not meet the first one's predictions file."""
    with_test = cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "runs/a")
    assert "evaluate on the test split:" in with_test.stdout and "--output a_predictions.csv" in with_test.stdout
    without = cli("fit", "configs/iris.yaml", "train.epochs=2", "data.split={train: 0.8, val: 0.2}", "--out", "runs/b")
    assert without.code == 0, without.output
    assert "evaluate (no test split):" in without.stdout and "--data LABELLED.csv" in without.stdout


def test_fit_next_steps_never_split_a_command_at_100_columns(workdir, cli):
    """A long run path puts each command on a line of its own, whole, rather than letting the
    terminal break it at a space; short ones stay aligned beside their labels."""
    from dltrain.summary import next_steps

    short = next_steps([("evaluate on the test split:", "dltrain evaluate runs/iris"), ("predict on new rows:", "dltrain predict runs/iris X.csv")], 100)
    assert short == ["  evaluate on the test split:  dltrain evaluate runs/iris", "  predict on new rows:         dltrain predict runs/iris X.csv"]
    deep = "runs/" + "a_rather_long_folder/" * 4 + "run"
    result = cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", deep)
    assert result.code == 0, result.output
    tail = result.stdout.splitlines()[-4:]
    assert tail[0] == "  evaluate on the test split:" and tail[1].endswith(f"evaluate {deep}")
    assert tail[2] == "  predict on new rows:" and tail[3].endswith(f"predict {deep} NEW_ROWS.csv --output run_predictions.csv")

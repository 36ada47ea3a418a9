"""A newcomer's first hour (issue 19): --version, schema -o, cache, a table given as a config, data
not made yet, runs grouped by their data, and a reason that counts once."""

import json
import subprocess
import sys
from importlib.metadata import version

import pytest

from dltrain import __version__
from tests.conftest import iris_config, write


def test_version_names_dltrain_and_torch_without_importing_torch(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.stdout.startswith(f"dltrain {__version__}") and __version__ == "0.1.0"
    assert f"torch {version('torch')}" in result.stdout
    code = (
        "import sys\n"
        "from dltrain.cli import app\n"
        "try:\n"
        "    app(['--version'], prog_name='dltrain')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.startswith("dltrain 0.1.0") and ran.stdout.strip().endswith("False")


def test_schema_to_a_file_says_where(tmp_path, cli):
    target = tmp_path / "schema.json"
    result = cli("schema", "-o", target)
    assert result.code == 0 and f"written: {target}" in result.stderr
    assert isinstance(json.loads(target.read_text()), dict)


# ----- cache


def _fill(cache):
    write(cache / "images" / "a.pt", "x" * 1000)
    write(cache / "images" / "b.pt", "x" * 24)
    write(cache / "remote" / "0123" / "iris.csv", "a,b\n1,2\n")


def test_cache_lists_each_entry_and_the_total(tmp_path, cli):
    cache = tmp_path / "cache"  # conftest points DLTRAIN_CACHE here
    empty = cli("cache")
    assert empty.code == 0 and str(cache) in empty.stdout and "empty" in empty.stdout
    _fill(cache)
    listed = cli("cache")
    assert listed.code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == f"{cache}:"
    assert [line.split()[0] for line in lines[1:]] == ["images", "remote", "total"]
    assert "1.0 KiB" in lines[1] and "2 file(s)" in lines[1] and "8 B" in lines[2] and "3 file(s)" in lines[3]
    assert cli("cache", "list").stdout == listed.stdout
    as_json = json.loads(cli("cache", "list", "--json").stdout)
    assert as_json["folder"] == str(cache) and as_json["files"] == 3 and as_json["bytes"] == 1032
    assert {e["name"]: e["files"] for e in as_json["entries"]} == {"images": 2, "remote": 1}
    assert json.loads(cli("cache", "--json").stdout) == as_json


def test_cache_root_is_the_one_decoding_uses(tmp_path):
    from dltrain.data.media import cache_folder
    from dltrain.tools.cache import cache_root

    assert cache_root() == cache_folder() == tmp_path / "cache"


def test_cache_clear_asks_first(tmp_path, cli):
    cache = tmp_path / "cache"
    _fill(cache)
    refused = CliRunnerInput.invoke(["cache", "clear"], "n\n")
    assert refused.exit_code == 1 and "nothing removed" in refused.stderr and (cache / "images" / "a.pt").is_file()
    unanswered = CliRunnerInput.invoke(["cache", "clear"], "")
    assert unanswered.exit_code == 1 and (cache / "images" / "a.pt").is_file()
    agreed = CliRunnerInput.invoke(["cache", "clear"], "y\n")
    assert agreed.exit_code == 0 and "3 file(s)" in agreed.stdout
    assert cache.is_dir() and not any(cache.iterdir())
    _fill(cache)
    assert cli("cache", "clear", "--yes").code == 0 and not any(cache.iterdir())
    again = cli("cache", "clear", "--yes")
    assert again.code == 0 and "already empty" in again.stdout


def test_cache_clear_refuses_a_folder_that_is_not_dltrains(tmp_path, cli, monkeypatch):
    home = tmp_path / "home"
    write(home / "notes.txt", "mine")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DLTRAIN_CACHE", str(home))
    result = cli("cache", "clear", "--yes")
    assert result.code == 2 and "nothing was removed" in result.stderr and (home / "notes.txt").is_file()


class CliRunnerInput:
    @staticmethod
    def invoke(args, text):
        from typer.testing import CliRunner

        from dltrain.cli import app

        return CliRunner().invoke(app, args, input=text)


# ----- a data file where a config goes


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.parametrize("table", ["data/iris.csv", "data/wine.db"])
def test_a_table_given_as_the_config_says_to_init_one(workdir, cli, command, table):
    result = cli(command, table)
    assert result.code == 2
    assert f"{table} is a table, not a config: write one with dltrain init {table} --target COLUMN" in result.stderr
    assert "found str" not in result.stderr
    assert not (workdir / "runs").exists()


def test_a_json_config_is_still_a_config(tmp_path, cli):
    config = write(tmp_path / "config.json", '{"data": {"source": "nowhere.csv", "target": "y"}, "model": {"layers": [{"Linear": "auto"}]}, "loss": "MSELoss"}')
    result = cli("check", config)
    assert result.code == 2 and "not a config" not in result.stderr and "nowhere.csv" in result.stderr


# ----- data that `make data` makes


def test_init_of_generated_data_not_made_yet_says_make_data(workdir, cli):
    result = cli("init", "data/generated/shapes", "--target", "label")
    assert result.code == 2
    assert "data/generated/shapes: no such file or folder; the example data under data/generated is made by the shipped generators: run make data first" in result.stderr
    other = cli("init", "elsewhere.csv", "--target", "y")
    assert other.code == 2 and "make data" not in other.stderr


# ----- runs, grouped by their data


def test_runs_are_grouped_by_their_data_and_can_be_filtered(workdir, cli):
    for config, epochs, out in (("iris", 1, "runs/iris-short"), ("iris", 4, "runs/iris-long"), ("penguins", 1, "runs/penguins")):
        assert cli("fit", f"configs/{config}.yaml", f"train.epochs={epochs}", "--out", out).code == 0
    result = cli("runs")
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert "data: data/iris.csv" in lines and "data: data/penguins.csv" in lines
    iris, penguins = lines.index("data: data/iris.csv"), lines.index("data: data/penguins.csv")
    assert iris < penguins and lines[penguins - 1] == ""  # a blank line between groups
    names = [line.split()[0] for line in lines if "val_loss" in line or "val_accuracy" in line]
    assert names == ["iris-long", "iris-short", "penguins"]  # ranked within the group
    only = cli("runs", "--data", "penguins").stdout
    assert "penguins" in only and "iris" not in only
    named = cli("runs", "--name", "iris-s*").stdout
    assert "iris-short" in named and "iris-long" not in named and "penguins" not in named
    by_config = cli("runs", "--name", "iris").stdout  # the config's name
    assert "iris-short" in by_config and "iris-long" in by_config and "penguins" not in by_config
    none = cli("runs", "--data", "nothing-like-it")
    assert none.code == 0 and "no runs" in none.stdout


def test_list_runs_knows_each_runs_data_and_config(workdir, cli):
    from dltrain.tools.runs import group_runs, list_runs

    assert cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", "runs/a").code == 0
    (row,) = list_runs("runs")
    assert row.data == "data/iris.csv" and row.config == "iris" and row.group == "data: data/iris.csv"
    assert group_runs([row]) == [("data: data/iris.csv", [row])]


# ----- a reason said once


def test_a_target_reason_counts_its_values_once(tmp_path, cli):
    config = iris_config(tmp_path)
    assert "loss: CrossEntropyLoss" in config.read_text()
    config.write_text(config.read_text().replace("loss: CrossEntropyLoss", "loss: MSELoss"))
    result = cli("check", config)
    assert result.code == 2
    assert "target 'species' is category (text, 3 distinct values)" in result.stderr
    assert result.stderr.count("3 distinct values") == 1

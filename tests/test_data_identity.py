"""Data identity (issue 16): a run's splits are row positions in its data, so evaluate and --resume
refuse data whose content changed since training (the table's rows, or the bytes of the files a
column names), and SQL rows are read in one order, so that the same rows keep the same positions."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dltrain.data.sources import ResolvedSource, sql_order
from tests.conftest import IRIS, ROOT, iris_config, write
from tests.test_images import SMALL, make_shapes
from tests.test_runs_safety import PASSWORD, _sql_config, postgres  # noqa: F401  (postgres: the fixture, a server of this module's own)


@pytest.fixture
def iris_run(tmp_path, cli):
    """A fitted iris run in tmp_path/run, on tmp_path/iris.csv."""
    config = iris_config(tmp_path)
    fitted = cli("fit", config, "--out", tmp_path / "run")
    assert fitted.code == 0, fitted.output
    return tmp_path / "run"


def _test_rows(run) -> list[int]:
    return json.loads((run / "data.json").read_text())["indices"]["test"]


def test_an_unchanged_run_evaluates_without_a_warning(iris_run, cli):
    data = json.loads((iris_run / "data.json").read_text())
    assert data["fingerprint_version"] == 2 and data["table_rows"] == 150 and "file_fingerprints" not in data
    result = cli("evaluate", iris_run, "--json")
    assert result.code == 0, result.output
    assert "changed" not in result.stderr
    assert "data_changed" not in json.loads(result.stdout)
    assert set(json.loads((iris_run / "evaluate_test.json").read_text())) == {"split", "rows", "metrics", "confusion_matrix", "baselines"}


def test_shuffled_labels_are_refused_and_allowed_only_when_asked(iris_run, cli):
    table = pd.read_csv(iris_run.parent / "iris.csv")
    table["species"] = table["species"].sample(frac=1, random_state=1).to_numpy()
    table.to_csv(iris_run.parent / "iris.csv", index=False)
    refused = cli("evaluate", iris_run)
    assert refused.code == 2 and "Traceback" not in refused.output
    message = refused.stderr
    assert "its data changed since it was trained" in message and "iris.csv has other content now" in message
    assert "150 rows, as then, but other values or another order" in message
    assert "Put the data the run was trained on back" in message and "--data FILE" in message and "--allow-changed-data" in message
    assert not (iris_run / "evaluate_test.json").exists()
    allowed = cli("evaluate", iris_run, "--allow-changed-data", "--json")
    assert allowed.code == 0, allowed.output
    assert "--allow-changed-data" in allowed.stderr
    assert json.loads(allowed.stdout)["data_changed"] is True
    assert json.loads((iris_run / "evaluate_test.json").read_text())["data_changed"] is True
    again = cli("evaluate", iris_run, "--allow-changed-data")  # a result that says data_changed is evaluate's own
    assert again.code == 0, again.output
    listed = cli("runs", iris_run.parent)
    assert listed.code == 0 and "(on changed data)" in listed.stdout, listed.output


def test_deleted_rows_are_refused_and_rows_gone_cannot_be_allowed(iris_run, cli):
    table = pd.read_csv(iris_run.parent / "iris.csv")
    assert max(_test_rows(iris_run)) < 149  # seed 0: deleting one row keeps every test position in the table
    table.iloc[1:].to_csv(iris_run.parent / "iris.csv", index=False)
    refused = cli("evaluate", iris_run)
    assert refused.code == 2 and "149 rows now, 150 when it was trained: rows were added or removed" in refused.stderr
    shifted = cli("evaluate", iris_run, "--allow-changed-data", "--json")
    assert shifted.code == 0, shifted.output
    assert json.loads(shifted.stdout)["data_changed"] is True
    table.iloc[:100].to_csv(iris_run.parent / "iris.csv", index=False)
    gone = cli("evaluate", iris_run, "--allow-changed-data")
    assert gone.code == 2 and "those rows are gone" in gone.stderr and "--data FILE" in gone.stderr


def test_allow_changed_data_goes_with_the_runs_own_split(iris_run, cli):
    result = cli("evaluate", iris_run, "--data", iris_run.parent / "iris.csv", "--allow-changed-data")
    assert result.code == 2 and "goes with the run's own split" in result.stderr


def test_a_run_recorded_before_version_2_is_checked_as_it_was(tmp_path, cli):
    """An image run whose checkpoints hold only the table's fingerprint: files rewritten in place are
    not what it recorded, so it evaluates as before rather than becoming "changed"."""
    folder = make_shapes(tmp_path / "shapes", 8)
    run = tmp_path / "run"
    assert cli("fit", write(tmp_path / "c.yaml", SMALL.format(source=folder)), "--out", run).code == 0
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        for key in ("fingerprint_version", "table_rows", "file_fingerprints"):
            del state["data"][key]
        torch.save(state, run / name)
    for path in sorted(folder.rglob("*.png")):
        Image.new("RGB", (32, 32), "white").save(path)
    result = cli("evaluate", run)
    assert result.code == 0, result.output
    assert "changed" not in result.stderr


# ----- the files a column names


def test_images_rewritten_in_place_are_refused_by_evaluate_and_resume(tmp_path, cli):
    folder = make_shapes(tmp_path / "shapes", 8)
    run = tmp_path / "run"
    assert cli("fit", write(tmp_path / "c.yaml", SMALL.format(source=folder)), "--out", run).code == 0
    recorded = json.loads((run / "data.json").read_text())["file_fingerprints"]
    assert set(recorded) == {"train", "val", "test"}
    unchanged = cli("evaluate", run, "--json")
    assert unchanged.code == 0 and "changed" not in unchanged.stderr, unchanged.output
    for path in sorted((folder / "circle").glob("*.png")):  # the same names and table, other pixels
        Image.new("RGB", (32, 32), "white").save(path)
    refused = cli("evaluate", run)
    assert refused.code == 2 and "Traceback" not in refused.output
    assert "image files of the test split (column 'path'" in refused.stderr and "under the same names" in refused.stderr
    resumed = cli("fit", "--resume", run, "train.epochs=2")
    assert resumed.code == 2 and "image files of the train and val splits" in resumed.stderr, resumed.output
    allowed = cli("evaluate", run, "--allow-changed-data", "--json")
    assert allowed.code == 0 and json.loads(allowed.stdout)["data_changed"] is True


def test_an_image_table_with_a_file_rewritten_is_refused(tmp_path, cli):
    """A table of paths (not a folder): the same cells, one image of the test split rewritten."""
    folder = make_shapes(tmp_path / "shapes", 8)
    paths = sorted(folder.rglob("*.png"))
    pd.DataFrame({"image": [str(p.relative_to(tmp_path)) for p in paths], "shape": [p.parent.name for p in paths]}).to_csv(tmp_path / "t.csv", index=False)
    config = write(tmp_path / "c.yaml", SMALL.format(source="t.csv").replace("data:\n", "data:\n  target: shape\n"))
    run = tmp_path / "run"
    fitted = cli("fit", config, "--out", run)
    assert fitted.code == 0, fitted.output
    one = paths[_test_rows(run)[0]]
    with Image.open(one) as image:
        size = image.size
    Image.new("RGB", size, "white").save(one)
    refused = cli("evaluate", run)
    assert refused.code == 2 and "image files of the test split (column 'image'" in refused.stderr, refused.output
    assert cli("evaluate", run, "--split", "train").code == 0  # the train split's files are as they were


# ----- SQL: one order of rows, whatever order the database keeps them in


def _iris_db(path) -> None:
    table = pd.read_csv(IRIS_CSV)
    with sqlite3.connect(path) as connection:
        table.to_sql("iris", connection, index=False)
    connection.close()


IRIS_CSV = ROOT / "data" / "iris.csv"


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_sqlite_table_rebuilt_in_another_order_evaluates_the_same(tmp_path, cli, in_memory):
    _iris_db(tmp_path / "iris.db")
    config = iris_config(tmp_path, IRIS.replace("source: iris.csv", "source: {type: sql, url: 'sqlite:///iris.db', query: select * from iris}\n  in_memory: " + str(in_memory).lower()))
    run = tmp_path / "run"
    assert cli("fit", config, "--out", run).code == 0
    assert json.loads((run / "data.json").read_text())["source"]["order"] == "columns"
    first = cli("evaluate", run, "--json")
    assert first.code == 0, first.output
    with sqlite3.connect(tmp_path / "iris.db") as connection:
        connection.execute("create table shuffled as select * from iris order by random()")
        connection.execute("drop table iris")
        connection.execute("alter table shuffled rename to iris")
    connection.close()
    with sqlite3.connect(tmp_path / "iris.db") as connection:
        physical = pd.read_sql_query("select * from iris", connection)
    connection.close()
    assert not physical.equals(pd.read_csv(IRIS_CSV))  # the rows really are in another order now
    again = cli("evaluate", run, "--json")
    assert again.code == 0, again.output
    assert "changed" not in again.stderr
    assert json.loads(again.stdout)["metrics"] == json.loads(first.stdout)["metrics"]
    resumed = cli("fit", "--resume", run, "train.epochs=4")
    assert resumed.code == 0, resumed.output


@pytest.mark.parametrize(
    ("query", "order"),
    [
        ("select * from iris", "columns"),
        ("  SELECT * FROM iris;  ", "columns"),
        ("with t as (select * from iris) select * from t", "columns"),
        ("select * from (select * from iris order by species) as x", "columns"),
        ("select *, row_number() over (order by species) as n from iris", "columns"),
        ("select * from iris order by species, sepal_length", "query"),
        ("select * from iris ORDER BY lower(species) limit 10", "query"),
        ("pragma table_info(iris)", "query"),
    ],
)
def test_queries_without_an_order_of_their_own_are_ordered_by_every_column(query, order):
    assert sql_order(ResolvedSource("sql", url="sqlite:///x.db", query=query)) == order


def test_a_run_recorded_before_sql_order_reads_its_rows_as_then(tmp_path):
    from dltrain.data.prepare import recorded_sources

    old = {"source": {"type": "sql", "url": "sqlite:///x.db", "query": "select * from iris"}}
    assert sql_order(recorded_sources(old)[""]) == "query"


# ----- a real PostgreSQL server, where an UPDATE that changes nothing moves rows


def test_a_no_op_update_in_postgresql_keeps_the_runs_rows(postgres, tmp_path, cli, monkeypatch):  # noqa: F811
    import pg8000.native

    monkeypatch.setenv("DB_SECRET", PASSWORD)
    config = _sql_config(tmp_path, f"postgresql+pg8000://dl:${{DB_SECRET}}@127.0.0.1:{postgres}/postgres")
    run = tmp_path / "run"
    fitted = cli("fit", config, "--out", run)
    assert fitted.code == 0, fitted.output
    first = cli("evaluate", run, "--json")
    assert first.code == 0, first.output
    connection = pg8000.native.Connection("dl", password=PASSWORD, host="127.0.0.1", port=postgres, database="postgres")
    try:
        before = connection.run("select species from iris")
        connection.run("update iris set species = species where sepal_length < 5.5")  # new row versions, at the heap's end
        after = connection.run("select species from iris")
    finally:
        connection.close()
    assert before != after and sorted(map(tuple, before)) == sorted(map(tuple, after))  # the same rows, in another order
    again = cli("evaluate", run, "--json")
    assert again.code == 0, again.output
    assert "changed" not in again.stderr
    assert np.allclose(list(json.loads(again.stdout)["metrics"].values()), list(json.loads(first.stdout)["metrics"].values()))

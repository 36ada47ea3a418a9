"""`dltrain predict` streams its input: chunk by chunk, the same predictions as the whole table at
once, in bounded memory, and an output that appears whole or not at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dltrain import console, inference
from dltrain.inference import predict
from tests.conftest import ROOT, run_cli, write
from tests.test_runs_safety import PASSWORD, postgres  # noqa: F401  (postgres: the fixture, a server of this module's own)

# predict with a chunk size of argv[1] rows, then the command line of `dltrain` (argv[2:])
CHUNKED = "import sys, dltrain.inference as i; i.CHUNK_ROWS = int(sys.argv[1]); sys.argv[1:2] = []; from dltrain.cli import main; main()"


@pytest.fixture
def penguins(workdir, cli):
    """A penguins run that copies an id column, and its rows (no target) with unseen islands and text in
    a numeric column spread over several chunks of 50 rows."""
    table = pd.read_csv(workdir / "data" / "penguins.csv")
    table.insert(0, "name", [f"p{i}" for i in range(len(table))])
    table.to_csv(workdir / "data" / "named.csv", index=False)
    fitted = cli(
        "fit", "configs/penguins.yaml", "data.source=../data/named.csv", "data.id=name", "train.epochs=2", "--out", "r"
    )
    assert fitted.code == 0, fitted.output
    rows = table.drop(columns="species").astype({"bill_length_mm": object})
    rows.loc[[3, 120, 260], "island"] = "Atlantis"
    rows.loc[[10, 200], "bill_length_mm"] = "n.a."
    return workdir / "r", rows


def _same(streamed: pd.DataFrame, whole: pd.DataFrame) -> None:
    assert (
        list(streamed.columns)
        == list(whole.columns)
        == ["name", "prediction", "prob_Adelie", "prob_Chinstrap", "prob_Gentoo"]
    )
    assert len(streamed) == len(whole) == 344
    assert streamed["name"].tolist() == whole["name"].tolist()  # the same rows, in the same order
    assert streamed["prediction"].tolist() == whole["prediction"].tolist()
    probs = [c for c in whole.columns if c.startswith("prob_")]
    assert np.abs(streamed[probs].to_numpy(float) - whole[probs].to_numpy(float)).max() < 1e-6


@pytest.mark.parametrize(
    "suffix, save, load",
    [
        (".csv", lambda t, p: t.to_csv(p, index=False), pd.read_csv),
        (".parquet", lambda t, p: t.astype({"bill_length_mm": str}).to_parquet(p, row_group_size=40), pd.read_parquet),
        (".jsonl", lambda t, p: t.to_json(p, orient="records", lines=True), lambda p: pd.read_json(p, lines=True)),
    ],
)
def test_streamed_predictions_equal_the_whole_tables(penguins, cli, monkeypatch, suffix, save, load):
    run, rows = penguins
    save(rows, f"rows{suffix}")
    monkeypatch.setattr(inference, "CHUNK_ROWS", 50)  # 344 rows: seven chunks
    monkeypatch.setattr(console, "_warned", set())  # a process says each warning once: this test's are said afresh
    result = cli("predict", run, f"rows{suffix}", "--output", f"p{suffix}")
    assert result.code == 0, result.output
    assert "344 predictions written" in result.stderr
    # each warning once, with the count of the whole table, not one a chunk
    err = " ".join(result.stderr.split())
    assert err.count("never saw") == 1 and "column 'island' has 3 value(s) that training never saw ('Atlantis'" in err
    assert err.count("cell(s) of text") == 1 and "column 'bill_length_mm' is numeric: 2 cell(s) of text ('n.a.')" in err
    whole = predict(run, load(f"rows{suffix}"), chunk_rows=10**9)  # the table at once, in memory
    assert isinstance(whole, pd.DataFrame)
    _same(load(f"p{suffix}"), whole)
    _same(predict(run, f"rows{suffix}"), whole)  # the Python API gathers the chunks into one DataFrame


def test_a_bad_chunk_far_into_the_file_writes_nothing(penguins, cli, monkeypatch):
    run, rows = penguins
    rows.to_csv("rows.csv", index=False)
    with open("rows.csv", "a") as f:
        f.write('p999,Biscoe,1,2,3,4,male,2009,"unclosed\n')  # a quote that never closes, in the last chunk
    monkeypatch.setattr(inference, "CHUNK_ROWS", 50)
    result = cli("predict", run, "rows.csv", "--output", "p.csv")
    assert result.code == 2 and "rows.csv" in result.stderr and "Traceback" not in result.output
    assert not Path("p.csv").exists() and not list(Path().glob(".p.csv.*"))


def test_a_parquet_column_that_changes_type_is_exit_2_and_writes_nothing(penguins, cli, monkeypatch):
    run, rows = penguins
    rows["name"] = [i if i < 100 else f"p{i}" for i in range(len(rows))]  # numbers, then text: one type per chunk
    rows.to_json("rows.jsonl", orient="records", lines=True)
    monkeypatch.setattr(inference, "CHUNK_ROWS", 50)
    result = cli("predict", run, "rows.jsonl", "--output", "p.parquet")
    assert result.code == 2 and "a Parquet column holds one type" in " ".join(result.stderr.split())
    assert not Path("p.parquet").exists()
    assert cli("predict", run, "rows.jsonl", "--output", "p.csv").code == 0  # CSV holds any cell


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """W1's shape: a small MLP on 32 numeric inputs and four classes, fitted on 2,000 rows for one
    epoch, and 300,000 new rows to predict (a CSV of 61 MB; 77 MB as the float64 table)."""
    work = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    columns = [f"x{i}" for i in range(32)]
    train = pd.DataFrame(rng.normal(size=(2000, 32)).round(3), columns=columns)
    train["y"] = np.array(["a", "b", "c", "d"])[np.digitize(train[columns[:4]].sum(axis=1), [-1.35, 0, 1.35])]
    train.to_csv(work / "train.csv", index=False)
    write(
        work / "wide.yaml",
        "data: {source: train.csv, target: y, batch_size: 256}\nmodel: {layers: [{Linear: 128}, ReLU, {Linear: auto}]}\n"
        "loss: CrossEntropyLoss\ntrain: {epochs: 1}\n",
    )
    with pytest.MonkeyPatch.context() as patch:
        import dltrain.tools.plot

        patch.setattr(dltrain.tools.plot, "leave_curves", lambda run, higher, wait=False: None)
        patch.setenv("DLTRAIN_CACHE", str(work / "cache"))
        assert run_cli("fit", work / "wide.yaml", "--out", work / "run").code == 0
    import pyarrow as pa
    import pyarrow.csv

    rows = pd.DataFrame(rng.normal(size=(300_000, 32)).round(3), columns=columns)
    pyarrow.csv.write_csv(pa.Table.from_pandas(rows, preserve_index=False), work / "rows.csv")
    rows.head(1000).to_csv(work / "small.csv", index=False)
    return work


def _command(work: Path, chunk_rows: int, rows: str, out: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        CHUNKED,
        str(chunk_rows),
        "predict",
        str(work / "run"),
        str(work / rows),
        "-o",
        str(work / out),
    ]


def _predicting(work: Path, chunk_rows: int, rows: str, out: str) -> subprocess.Popen:
    return subprocess.Popen(
        _command(work, chunk_rows, rows, out),
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )


# A child's ru_maxrss counts the pages it shared with its parent before exec: the test process (torch,
# a fitted run) is larger than a prediction. So a small launcher starts the prediction and says its peak.
LAUNCHER = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def _peak_mb(work: Path, chunk_rows: int, rows: str, out: str) -> float:
    """The peak resident memory of one `dltrain predict` process (ru_maxrss, in MB)."""
    launched = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *_command(work, chunk_rows, rows, out)],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert launched.returncode == 0, launched.stderr
    return int(launched.stdout.split()[-1]) / 1024


def test_predict_streams_in_bounded_memory(wide):
    base = _peak_mb(wide, 10_000, "small.csv", "small_out.csv")  # python, torch, pandas and the model
    whole = _peak_mb(wide, 10**9, "rows.csv", "whole.csv") - base  # all 300,000 rows at once
    streamed = _peak_mb(wide, 10_000, "rows.csv", "streamed.csv") - base
    assert whole > 150, f"the whole table took only {whole:.0f} MB over the base {base:.0f} MB"
    # one chunk of 10,000 rows is 3% of the table (measured: about 25 MB over the base, the whole table
    # 330 MB); a quarter of the whole table's memory leaves room for the allocator on any machine
    assert streamed < whole / 4, f"streamed: {streamed:.0f} MB over the base, the whole table: {whole:.0f} MB"
    assert pd.read_csv(wide / "streamed.csv").equals(pd.read_csv(wide / "whole.csv"))


def test_a_killed_prediction_leaves_no_partial_output(wide):
    process = _predicting(wide, 2_000, "rows.csv", "killed.csv")  # 150 chunks: several seconds of writing
    deadline = time.monotonic() + 120
    started = []
    while not started and process.poll() is None and time.monotonic() < deadline:
        started = [p for p in wide.glob(".killed.csv.*.tmp") if p.stat().st_size > 0]
        time.sleep(0.01)
    assert started, "the temporary file never appeared"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (wide / "killed.csv").exists()  # half a file is never where the output goes
    # the next prediction there writes the whole file and removes what the killed one left
    again = _predicting(wide, 50_000, "rows.csv", "killed.csv")
    assert again.wait() == 0, again.stderr.read().decode()
    assert len(pd.read_csv(wide / "killed.csv")) == 300_000
    assert not list(wide.glob(".killed.csv.*.tmp"))


STDOUT_LAUNCHER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[2:], check=True, stdout=open(sys.argv[1], 'wb')); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def test_predict_to_standard_output_streams_and_stops_quietly_when_its_reader_does(wide):
    command = _command(wide, 10_000, "rows.csv", "unused.csv")[:-2]  # no -o: CSV on standard output
    launched = subprocess.run(
        [sys.executable, "-S", "-c", STDOUT_LAUNCHER, str(wide / "stdout.csv"), *command],
        cwd=wide, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )
    assert launched.returncode == 0, launched.stderr
    streamed = int(launched.stdout.split()[-1]) / 1024 - _peak_mb(wide, 10_000, "small.csv", "small_out.csv")
    assert streamed < 120, f"predict to standard output took {streamed:.0f} MB over the base: it held the table"
    printed = pd.read_csv(wide / "stdout.csv")  # one header, then every row's prediction in order
    assert len(printed) == 300_000 and list(printed.columns) == ["row", "prediction", "prob_a", "prob_b", "prob_c", "prob_d"]
    assert printed["row"].is_monotonic_increasing and printed["row"].iloc[-1] == 299_999  # positions run on across chunks
    head = subprocess.Popen(command, cwd=wide, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert head.stdout.readline().startswith(b"row,prediction,")
    head.stdout.close()  # `| head -1`: the reader stops after a line
    assert head.wait(timeout=120) == 141  # 128 + SIGPIPE, as a filter that is cut off
    assert head.stderr.read() == b""


# ----- the rows of an SQL query: an SQLite file, or a database server


def test_predict_reads_an_sql_query_chunk_by_chunk(penguins, cli, monkeypatch):
    import sqlite3

    run, rows = penguins
    with sqlite3.connect("rows.db") as connection:
        rows.astype({"bill_length_mm": str}).to_sql("new_rows", connection, index=False)
    connection.close()
    monkeypatch.setattr(inference, "CHUNK_ROWS", 50)  # seven chunks, fetched as the query gives them
    monkeypatch.setattr(console, "_warned", set())
    query = "select * from new_rows order by name desc"
    result = cli("predict", run, "rows.db", "--query", query, "--output", "p.csv")
    assert result.code == 0, result.output
    assert "344 predictions written" in result.stderr and " ".join(result.stderr.split()).count("never saw") == 1
    ordered = rows.sort_values("name", ascending=False, ignore_index=True)
    _same(pd.read_csv("p.csv"), predict(run, ordered, chunk_rows=10**9))  # in the query's order
    printed = cli("predict", run, "rows.db", "--query", query)  # the same, on standard output
    assert printed.code == 0 and printed.stdout == Path("p.csv").read_text()
    no_query = cli("predict", run, "rows.db")
    assert no_query.code == 2 and "--query" in no_query.stderr
    bad = cli("predict", run, "rows.db", "--query", "select * from nowhere")
    assert bad.code == 2 and "nowhere" in bad.stderr and "new_rows" in bad.stderr and "Traceback" not in bad.output


def test_predict_reads_a_query_on_a_postgresql_server(postgres, workdir, cli, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DB_SECRET", PASSWORD)
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "r").code == 0
    monkeypatch.setattr(inference, "CHUNK_ROWS", 40)
    url = f"postgresql+pg8000://dl:${{DB_SECRET}}@127.0.0.1:{postgres}/postgres"
    result = cli("predict", "r", url, "--query", "select * from iris where species <> 'setosa'", "-o", "p.csv")
    assert result.code == 0, result.output
    table = pd.read_csv(workdir / "data" / "iris.csv")
    expected = predict(workdir / "r", table[table["species"] != "setosa"].reset_index(drop=True))
    found = pd.read_csv("p.csv")
    assert len(found) == 100 and found["prediction"].tolist() == expected["prediction"].tolist()
    assert PASSWORD not in result.output
    wrong = cli("predict", "r", url.replace("${DB_SECRET}", "Not-it-123"), "--query", "select * from iris")
    assert wrong.code == 2 and "Not-it-123" not in wrong.stderr and "Traceback" not in wrong.output

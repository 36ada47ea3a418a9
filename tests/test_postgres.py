"""The SQL source on a real PostgreSQL server of the tests' own (tests/test_runs_safety.py's
fixture): a table streamed through psycopg's server-side cursor trains in bounded memory, in the
same row order as the whole read, and the run evaluates as any other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write
from tests.test_runs_safety import PASSWORD, postgres  # noqa: F401  (the fixture: a server of this module's own)

ROWS = int(__import__("os").environ.get("PG_ROWS", "500000"))
PEAK = (  # the command run as a child, and the largest child's peak resident memory
    "import resource, subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'dltrain', *sys.argv[1:]])\n"
    "sys.stderr.write(f\"\\npeak_kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n\")\n"
    "sys.exit(done.returncode)\n"
)


@pytest.fixture(scope="module")
def big(postgres):  # noqa: F811
    """ROWS rows of eight numbers and a label, made by the server itself (generate_series)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver with server-side cursors: pip install 'psycopg[binary]'")
    import pg8000.native

    connection = pg8000.native.Connection("dl", password=PASSWORD, host="127.0.0.1", port=postgres, database="postgres")
    columns = ", ".join(f"x{i} float8" for i in range(8))
    connection.run(f"create table big (id int, {columns}, label text)")
    values = ", ".join(f"sin(g * {i + 1}.37)" for i in range(8))
    connection.run(f"insert into big select g, {values}, case when sin(g * 1.37) + sin(g * 2.37) > 0 then 'up' else 'down' end from generate_series(1, {ROWS}) g")
    connection.run("analyze big")
    connection.close()
    return postgres


def _fit(tmp_path: Path, port: int, in_memory: bool) -> tuple[Path, int]:
    folder = tmp_path / ("stream" if in_memory is False else "whole")
    config = write(
        folder / "config.yaml",
        f"""\
data:
  source: {{type: sql, url: "postgresql+psycopg://dl:${{DB_SECRET}}@127.0.0.1:{port}/postgres", query: select * from big}}
  target: label
  inputs: [x0, x1, x2, x3, x4, x5, x6, x7]
  split: {{train: 0.9, val: 0.05, test: 0.05}}
  batch_size: 1024
  in_memory: {str(in_memory).lower()}
model: {{layers: [{{Linear: 32}}, ReLU, {{Linear: auto}}]}}
loss: CrossEntropyLoss
optimizer: {{type: Adam, lr: 0.01}}
train: {{epochs: 2}}
""",
    )
    env = {"DB_SECRET": PASSWORD, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DLTRAIN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", PEAK, "fit", str(config), "--out", str(folder / "run")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run", int(done.stderr.rsplit("peak_kb ", 1)[1].split()[0])


def test_a_table_streamed_from_postgresql_trains_in_bounded_memory_on_the_same_rows(big, tmp_path, cli, monkeypatch):
    streamed, streamed_kb = _fit(tmp_path, big, in_memory=False)
    whole, whole_kb = _fit(tmp_path, big, in_memory=True)
    # the whole read holds the query's rows as Python tuples, then as a DataFrame, then as tensors;
    # the server-side cursor hands over 65,536 rows at a time
    assert whole_kb - streamed_kb > 150_000, (whole_kb, streamed_kb)  # 900,000 rows: 1,358 MB against 686 MB
    recorded = [json.loads((run / "data.json").read_text()) for run in (streamed, whole)]
    assert recorded[0]["fingerprint"] == recorded[1]["fingerprint"] and recorded[0]["indices"] == recorded[1]["indices"]
    assert "${DB_SECRET}" in (streamed / "config.yaml").read_text() and PASSWORD not in (streamed / "config.yaml").read_text()
    monkeypatch.setenv("DB_SECRET", PASSWORD)
    evaluated = cli("evaluate", streamed, "--json", "--no-baseline")
    assert evaluated.code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"]["accuracy"] > 0.9  # the label is a line in x0 and x1

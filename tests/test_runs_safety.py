"""A run directory stays one run: one writer at a time (its lock), a full disk that still leaves a
resumable last.pt, and database passwords that never reach its files. Real processes, signals,
file systems and a real PostgreSQL server where the machine has one."""

from __future__ import annotations

import fcntl
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from dltrain import checkpoint
from dltrain.data.sources import connect_url, redact_secrets, redact_url
from dltrain.errors import DataError
from tests.conftest import ROOT, write

SLOW = """\
seed: 1
data: {source: rows.csv, target: y, batch_size: 8, split: {train: 0.9, val: 0.1}}
model: {layers: [{Linear: 32}, ReLU, {Linear: auto}]}
loss: CrossEntropyLoss
optimizer: {type: SGD, lr: 0.05}
train: {epochs: 1}
"""


def dltrain_process(*args, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dltrain", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def dltrain_run(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dltrain", *map(str, args)], capture_output=True, text=True, timeout=300, **options)


def table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 6))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["y"] = np.where(x[:, 0] + x[:, 1] > 0, "a", "b")
    frame.to_csv(path, index=False)


def wait_for_holder(run: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `process` has taken the run's lock and written its pid there."""
    deadline = time.time() + timeout
    while f'"pid": {process.pid},' not in ((run / ".lock").read_text() if (run / ".lock").exists() else ""):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the process never took the lock"
        time.sleep(0.05)


def wait_for_training(run: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `process` has its lock and has rewritten config.yaml: signals are answered with a last.pt from then on."""
    recorded = (run / "config.yaml").stat().st_ino
    wait_for_holder(run, process, timeout)
    deadline = time.time() + timeout
    while (run / "config.yaml").stat().st_ino == recorded:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the process never started training"
        time.sleep(0.05)
    time.sleep(0.5)  # into the epoch


def lock_is_free(run: Path) -> bool:
    fd = os.open(run / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# ----- 1. one writer per run


@pytest.fixture
def slow_run(tmp_path) -> Path:
    """A run of one epoch whose next epochs take a few seconds each (20,000 rows, batches of 8)."""
    table(tmp_path / "rows.csv", 20_000)
    config = write(tmp_path / "config.yaml", SLOW)
    dltrain.fit(config, out=tmp_path / "run", progress=False, curves=False)
    return tmp_path / "run"


def test_a_second_resume_of_a_running_run_is_refused_naming_the_first(slow_run):
    first = dltrain_process("fit", "--resume", slow_run, "train.epochs=3")
    wait_for_holder(slow_run, first)
    assert not lock_is_free(slow_run)
    second = dltrain_run("fit", "--resume", slow_run, "train.epochs=5")
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid} on {socket.gethostname()}" in second.stderr and "Traceback" not in second.stderr
    assert f"kill {first.pid}" in second.stderr
    # a new fit into the same folder is refused too (--out of a folder that is not empty)
    again = dltrain_run("fit", slow_run.parent / "config.yaml", "--out", slow_run)
    assert again.returncode == 2 and "not empty" in again.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    # the first one's work is whole: three epochs, in last.pt and in metrics.csv
    assert checkpoint.load(slow_run, "last.pt").state["epoch"] == 3
    assert list(pd.read_csv(slow_run / "metrics.csv")["epoch"]) == [1, 2, 3]
    # released after a normal exit, and the holder's name cleared
    assert lock_is_free(slow_run) and (slow_run / ".lock").read_text() == ""


def test_the_lock_is_released_after_sigterm(slow_run):
    process = dltrain_process("fit", "--resume", slow_run, "train.epochs=40")
    wait_for_training(slow_run, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert lock_is_free(slow_run)
    # and the next --resume takes it: it starts, and is stopped in turn
    again = dltrain_process("fit", "--resume", slow_run, "train.epochs=40")
    wait_for_training(slow_run, again)
    again.send_signal(signal.SIGTERM)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 143, stderr
    assert lock_is_free(slow_run)


def test_a_fit_holds_the_lock_of_its_new_run_directory(tmp_path):
    table(tmp_path / "rows.csv", 20_000)
    # epochs enough that the fit is still training when the second command starts, however fast the
    # machine; it is stopped by SIGTERM once that command has been refused
    config = write(tmp_path / "config.yaml", SLOW.replace("epochs: 1", "epochs: 200"))
    run = tmp_path / "run"
    process = dltrain_process("fit", config, "--out", run)
    wait_for_holder(run, process)
    busy = dltrain_run("fit", "--resume", run)
    assert busy.returncode == 2 and f"pid {process.pid}" in busy.stderr, busy.stderr
    deadline = time.time() + 120
    while not (run / "last.pt").exists():  # training: a signal is answered with a last.pt and 143
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert lock_is_free(run)


# ----- 2. a full disk


BIG = """\
seed: 0
data: {source: rows.csv, target: y, batch_size: 64, split: {train: 0.8, val: 0.2}}
model: {layers: [{Linear: 512}, ReLU, {Linear: 512}, ReLU, {Linear: auto}]}
loss: CrossEntropyLoss
train: {epochs: 3}
"""


@pytest.fixture
def big_model(tmp_path) -> Path:
    """A config whose checkpoints are about 3 MB (267,000 weights and Adam's two moments)."""
    table(tmp_path / "rows.csv", 2000)
    return write(tmp_path / "config.yaml", BIG)


@pytest.fixture
def small_disk():
    """A tmpfs of the size asked for, mounted for the test (root only); `resize` frees space on it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    folder = Path(tempfile.mkdtemp(prefix="dltrain-disk-"))
    mounted = []

    class Disk:
        path = folder

        def mount(self, size: int) -> Path:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
            mounted.append(True)
            return folder

        def resize(self, size: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)

    yield Disk()
    if mounted:
        subprocess.run(["umount", "-l", str(folder)])
    shutil.rmtree(folder, ignore_errors=True)


def test_a_disk_that_fills_after_last_pt_leaves_a_run_the_printed_command_resumes(big_model, tmp_path, small_disk):
    dltrain.fit(big_model, ["train.epochs=1"], out=tmp_path / "measure", progress=False, curves=False)
    size = (tmp_path / "measure" / "last.pt").stat().st_size
    # room for config.yaml, data.json and one checkpoint, not for a second one beside it
    disk = small_disk.mount(size + size // 2)
    run = disk / "run"
    failed = dltrain_run("fit", big_model, "--out", run)
    assert failed.returncode == 1, failed.stderr
    assert "No space left on device" in failed.stderr and "Traceback" not in failed.stderr
    command = re.search(r"continue with: (dltrain fit --resume \S+)", " ".join(failed.stderr.split()))
    assert command, failed.stderr
    # last.pt is the state of the epoch that just ended; nothing is half-written
    assert checkpoint.load(run, "last.pt").state["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    assert not (run / "curves.png").exists() or (run / "curves.png").read_bytes().endswith(b"IEND\xaeB`\x82")
    small_disk.resize(8 * size)  # space freed
    resumed = dltrain_run(*shlex.split(command[1])[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert "best.pt written again from last.pt (epoch 1" in resumed.stderr
    last = checkpoint.load(run, "last.pt").state
    assert last["epoch"] == 3 and list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2, 3]
    best = checkpoint.load(run, "best.pt").state
    assert best["epoch"] == last["best"]["epoch"]


def _file_size_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # a write past it fails with EFBIG

    return apply


def test_a_write_error_before_the_first_checkpoint_says_to_start_again(big_model, tmp_path):
    run = tmp_path / "run"
    failed = dltrain_run("fit", big_model, "--out", run, preexec_fn=_file_size_limit(1_000_000))
    assert failed.returncode == 1, failed.stderr
    message = " ".join(failed.stderr.split())
    assert "cannot write" in message and "last.pt" in message and "Traceback" not in message
    assert "--resume" not in message and "run the same dltrain fit again: no epoch was saved yet" in message
    assert not list(run.iterdir())  # --out's folder is kept, empty (the lock went with the rest)


def test_resume_takes_best_pt_when_last_pt_is_missing(slow_run):
    """A run of a dltrain that wrote best.pt before last.pt, on a disk that filled between them."""
    (slow_run / "last.pt").unlink()
    resumed = dltrain_run("fit", "--resume", slow_run, "train.epochs=2")
    assert resumed.returncode == 0, resumed.stderr
    assert "no last.pt: resuming from best.pt (epoch 1)" in resumed.stderr
    assert checkpoint.load(slow_run, "last.pt").state["epoch"] == 2


# ----- 3. passwords in database urls


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("postgresql://ann:s3cret@db.example/x", "postgresql://ann:***@db.example/x"),
        ("postgresql+psycopg://ann:p%40ss%2Fw@db:5432/x?sslmode=require", "postgresql+psycopg://ann:***@db:5432/x?sslmode=require"),
        ("mysql://ann:${DB_PASSWORD}@db/x", "mysql://ann:${DB_PASSWORD}@db/x"),
        ("postgresql://ann@db/x", "postgresql://ann@db/x"),
        ("postgresql://db:5432/x", "postgresql://db:5432/x"),
        ("mssql+pyodbc://db/x?user=ann&password=s3cret&driver=x", "mssql+pyodbc://db/x?user=ann&password=***&driver=x"),
        ("sqlite:////data/x.db", "sqlite:////data/x.db"),
    ],
)
def test_redact_url(url, written):
    assert redact_url(url) == written
    assert redact_secrets({"data": {"source": {"url": url}}, "n": [1, url]}) == {"data": {"source": {"url": written}}, "n": [1, written]}


def test_a_password_from_the_environment_is_quoted_into_the_url(monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "p@ss/w:rd")
    monkeypatch.setenv("PGPASSWORD", "other")
    assert connect_url("postgresql://ann:${DB_PASSWORD}@db/x") == "postgresql://ann:p%40ss%2Fw%3Ard@db/x"
    assert connect_url("postgresql://ann:***@db/x") == "postgresql://ann:other@db/x"
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(DataError, match=r"export PGPASSWORD=\.\.\..*postgresql://ann:\$\{PGPASSWORD\}@db/x"):
        connect_url("postgresql://ann:***@db/x")


def _sql_config(folder: Path, url: str, epochs: int = 2) -> Path:
    return write(
        folder / "config.yaml",
        f"""\
name: iris_pg
data:
  source: {{type: sql, url: "{url}", query: select * from iris}}
  target: species
  split: {{train: 0.7, val: 0.15, test: 0.15}}
  batch_size: 16
model: {{layers: [{{Linear: 16}}, ReLU, {{Linear: auto}}]}}
loss: CrossEntropyLoss
optimizer: {{type: Adam, lr: 0.01}}
train: {{epochs: {epochs}}}
""",
    )


@pytest.mark.parametrize("reference", ["${NOT_SET_FOR_DLTRAIN}", "***"])
def test_a_url_whose_password_is_not_in_the_environment_is_exit_2(tmp_path, cli, monkeypatch, reference):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    config = _sql_config(tmp_path, f"postgresql://ann:{reference}@127.0.0.1:9/x")
    result = cli("check", config)
    assert result.code == 2, result.output
    variable = "NOT_SET_FOR_DLTRAIN" if reference.startswith("$") else "PGPASSWORD"
    assert f"export {variable}=..." in result.stderr and "Traceback" not in result.output


PASSWORD = "s3cr@t/Pw"  # '@' and '/' percent-encoded in a literal url, quoted by dltrain from the environment
ENCODED = "s3cr%40t%2FPw"


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of our own on 127.0.0.1, user `dl` with PASSWORD, holding the iris table."""
    import glob

    path = os.pathsep.join([os.environ.get("PATH", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"))])  # where apt puts them
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) here")
    pytest.importorskip("pg8000", reason="the pure-Python PostgreSQL driver: pip install pg8000")
    import pg8000.native

    folder = Path(tempfile.mkdtemp(prefix="dltrain-pg-"))
    run_as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # postgres refuses to run as root
    (folder / "pw").write_text(PASSWORD + "\n")
    if run_as:
        shutil.chown(folder, "nobody")
        shutil.chown(folder / "pw", "nobody")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = subprocess.run([*run_as, initdb, "-D", str(folder / "data"), "-U", "dl", "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}"], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run([*run_as, pg_ctl, "-D", str(folder / "data"), "-l", str(folder / "log"), "-o", options, "-w", "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[-300:]}")
    try:
        connection = pg8000.native.Connection("dl", password=PASSWORD, host="127.0.0.1", port=port, database="postgres")
        connection.run("create table iris (sepal_length float, sepal_width float, petal_length float, petal_width float, species text)")
        for row in pd.read_csv(ROOT / "data" / "iris.csv").itertuples(index=False):
            connection.run("insert into iris values (:a, :b, :c, :d, :e)", a=row[0], b=row[1], c=row[2], d=row[3], e=row[4])
        connection.close()
        yield port
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(folder / "data"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _leaks(run: Path) -> list[str]:
    secrets = [PASSWORD.encode(), ENCODED.encode()]
    return [str(p) for p in run.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in secrets)]


def _environment(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    return {**env, **values}


def test_a_literal_password_is_written_nowhere_and_evaluate_takes_it_from_pgpassword(postgres, tmp_path):
    url = f"postgresql+pg8000://dl:{ENCODED}@127.0.0.1:{postgres}/postgres"
    config = _sql_config(tmp_path, url)
    run = tmp_path / "run"
    fitted = dltrain_run("fit", config, "--out", run, env=_environment())
    assert fitted.returncode == 0, fitted.stderr
    assert "holds a password" in fitted.stderr and ENCODED not in fitted.stderr + fitted.stdout
    assert {"config.yaml", "data.json", "best.pt", "last.pt"} <= {p.name for p in run.iterdir()}
    assert _leaks(run) == []
    written = f"postgresql+pg8000://dl:***@127.0.0.1:{postgres}/postgres"
    assert written in (run / "config.yaml").read_text() and written in (run / "data.json").read_text()
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        assert state["config"]["data"]["source"]["url"] == written and state["data"]["source"]["url"] == written
    refused = dltrain_run("evaluate", run, env=_environment())
    assert refused.returncode == 2 and "export PGPASSWORD=..." in refused.stderr and "Traceback" not in refused.stderr
    evaluated = dltrain_run("evaluate", run, "--json", env=_environment(PGPASSWORD=PASSWORD))
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"accuracy"' in evaluated.stdout
    resumed = dltrain_run("fit", "--resume", run, "train.epochs=3", env=_environment(PGPASSWORD=PASSWORD))
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(run, "last.pt").state["epoch"] == 3 and _leaks(run) == []


def test_a_password_from_the_environment_is_kept_as_its_reference(postgres, tmp_path):
    config = _sql_config(tmp_path, f"postgresql+pg8000://dl:${{DB_SECRET}}@127.0.0.1:{postgres}/postgres")
    run = tmp_path / "run"
    fitted = dltrain_run("fit", config, "--out", run, env=_environment(DB_SECRET=PASSWORD))
    assert fitted.returncode == 0, fitted.stderr
    assert "holds a password" not in fitted.stderr
    assert _leaks(run) == [] and "dl:${DB_SECRET}@" in (run / "config.yaml").read_text()
    refused = dltrain_run("fit", "--resume", run, "train.epochs=3", env=_environment())
    assert refused.returncode == 2 and "export DB_SECRET=..." in refused.stderr
    resumed = dltrain_run("fit", "--resume", run, "train.epochs=3", env=_environment(DB_SECRET=PASSWORD))
    assert resumed.returncode == 0, resumed.stderr
    wrong = dltrain_run("evaluate", run, env=_environment(DB_SECRET="Wr0ngPw"))
    assert wrong.returncode == 2 and "password" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "Wr0ngPw" not in wrong.stderr and "the password comes from $DB_SECRET" in wrong.stderr


def test_under_torchrun_every_rank_stops_when_the_run_is_locked(slow_run):
    """Rank 0 alone takes the lock; the other ranks hear its answer instead of waiting for it forever."""
    from dltrain.rundir import lock_run

    with lock_run(slow_run):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dltrain", "fit", "--resume", str(slow_run), "train.epochs=2"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert f"being written by another dltrain process (pid {os.getpid()} on" in result.stderr
    assert checkpoint.load(slow_run, "last.pt").state["epoch"] == 1

"""train.logger: mlflow, against a real `mlflow server` on 127.0.0.1: params, per-epoch metrics,
artifacts and tags; --resume continuing the same MLflow run; a server that is down; mlflow missing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import dltrain
from dltrain import tracking
from tests.conftest import IRIS, ROOT, iris_config

if tracking.mlflow_missing():
    print("tests/test_mlflow.py skipped: mlflow is not installed (pip install 'dltrain[mlflow]')")
    pytest.skip("mlflow is not installed", allow_module_level=True)

from mlflow.tracking import MlflowClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tracking server of its own (sqlite store, proxied artifacts): its URI."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    log = open(folder / "server.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def config(tmp_path: Path, uri: str | None, experiment: str, logger="mlflow", epochs: int = 3) -> dict:
    return {
        "name": "iris",
        "seed": 0,
        "data": {"source": str(ROOT / "data" / "iris.csv"), "target": "species", "batch_size": 16, "split": {"train": 0.7, "val": 0.15, "test": 0.15}},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": epochs, "out_dir": str(tmp_path / "runs"), "logger": logger, "mlflow": {"tracking_uri": uri, "experiment": experiment}},
    }


def mlflow_run(run_dir: Path, uri: str):
    state = json.loads((run_dir / "mlflow.json").read_text())
    assert state["tracking_uri"] == uri
    client = MlflowClient(uri)
    return client, client.get_run(state["run_id"])


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_run_logs_params_metrics_artifacts_and_tags(server, tmp_path):
    result = dltrain.fit(config(tmp_path, server, "logs"), progress=False)
    client, run = mlflow_run(result.run_dir, server)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "logs"
    params = run.data.params
    assert params["optimizer.lr"] == "0.01" and params["train.epochs"] == "3" and params["data.target"] == "species"
    assert json.loads(params["model.layers"])[0] == {"Linear": 16}  # lists as JSON
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert history(client, run.info.run_id, "val_loss") == list(zip(metrics["epoch"], metrics["val_loss"]))
    assert [step for step, _ in history(client, run.info.run_id, "train_loss")] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "last.pt", "config.yaml", "data.json", "metrics.csv"} <= artifacts
    fingerprint = json.loads((result.run_dir / "data.json").read_text())["fingerprint"]
    assert run.data.tags["dltrain.data_fingerprint"] == fingerprint
    assert run.data.tags["dltrain.run_dir"] == str(result.run_dir.resolve())
    assert run.info.run_name == result.run_dir.name


def test_resume_continues_the_same_mlflow_run(server, tmp_path, monkeypatch):
    """A list logger; the URI from MLFLOW_TRACKING_URI; the experiment by default the config's name."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    first = dltrain.fit(config(tmp_path, None, None, logger=["csv", "mlflow"], epochs=2), progress=False)
    client, run = mlflow_run(first.run_dir, server)
    assert client.get_experiment(run.info.experiment_id).name == "iris"
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [1, 2]
    resumed = dltrain.fit(resume=first.run_dir, overrides=["train.epochs=4"], progress=False)
    assert len(resumed.history) == 4
    client, again = mlflow_run(first.run_dir, server)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    metrics = pd.read_csv(first.run_dir / "metrics.csv")
    assert history(client, run.info.run_id, "val_loss") == list(zip(metrics["epoch"], metrics["val_loss"]))
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_the_git_commit_of_the_config_folder_is_a_tag(server, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = iris_config(tmp_path, "\n".join([IRIS.rstrip(), "  logger: mlflow", f"  mlflow: {{tracking_uri: '{server}', experiment: git}}", f"  out_dir: {tmp_path / 'runs'}", ""]))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    result = dltrain.fit(path, progress=False)
    _, run = mlflow_run(result.run_dir, server)
    assert run.data.tags["git.commit"] == commit
    assert tracking.git_commit(tmp_path / "runs") == commit and tracking.git_commit(Path("/")) is None


def test_a_server_that_is_down_costs_a_warning_and_seconds(tmp_path, cli):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config(tmp_path, uri, "down")))  # JSON is YAML
    start = time.monotonic()
    result = cli("fit", path, "--out", tmp_path / "run")
    took = time.monotonic() - start
    assert result.code == 0, result.output
    assert f"MLflow at {uri} is not reachable" in result.stderr
    assert "training goes on; metrics.csv has every epoch" in result.stderr
    assert "Traceback" not in result.output
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 3
    assert not (tmp_path / "run" / "mlflow.json").exists()
    assert took < 30, took


def test_without_mlflow_the_config_is_refused_with_the_extra_named(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config(tmp_path, None, None, logger=["csv", "mlflow"])))
    for command in (("check", path), ("fit", path)):
        result = cli(*command)
        assert result.code == 2, result.output
        assert "pip install 'dltrain[mlflow]'" in result.stderr and "train.logger" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_help_does_not_import_mlflow():
    code = "import sys; from typer.testing import CliRunner; from dltrain.cli import app; CliRunner().invoke(app, ['--help']); import dltrain.fitting; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_params_are_flattened_cut_and_sent_in_batches():
    flat = tracking.flatten({"optimizer": {"lr": 0.01, "betas": [0.9, 0.99]}, "name": "x" * 7000, "train": {"early_stopping": None, "compile": False}})
    assert flat == {"optimizer.lr": "0.01", "optimizer.betas": "[0.9, 0.99]", "name": "x" * 6000, "train.early_stopping": "null", "train.compile": "false"}

    class Client:
        batches: list[int] = []

        def log_batch(self, run_id, params=(), metrics=()):
            self.batches.append(len(params) + len(metrics))

    tracker = tracking.MLflowTracker(Path("."), None, "e")
    tracker.client, tracker.run_id = Client(), "r"
    tracker._log_params({f"k{i}": i for i in range(250)})
    assert Client.batches == [100, 100, 50]
    tracker.epoch({"epoch": 1, "train_loss": 0.5, "val_loss": float("nan"), "lr": float("inf"), "note": "x"})
    assert Client.batches[-1] == 1  # non-finite values and text are left out


def test_a_call_that_fails_mid_run_is_said_once_and_logging_stops(tmp_path):
    class Refusing:
        calls = 0

        def log_batch(self, run_id, params=(), metrics=()):
            Refusing.calls += 1
            raise RuntimeError("API request failed with error code 503 != 200")

    tracker = tracking.MLflowTracker(tmp_path, None, "e")
    tracker.client, tracker.run_id, tracker.uri = Refusing(), "r", "http://example.invalid"
    tracker.epoch({"epoch": 1, "train_loss": 0.5})
    tracker.epoch({"epoch": 2, "train_loss": 0.4})
    tracker.finish()
    assert Refusing.calls == 1 and not tracker.active


def test_a_signal_ends_the_mlflow_run_as_killed_with_last_pt(server, tmp_path):
    import os
    import signal

    from dltrain.train.trainer import Interrupted

    def interrupt(row):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # caught by fit: last.pt, then Interrupted
        return False

    with pytest.raises(Interrupted) as stopped:
        dltrain.fit(config(tmp_path, server, "signal", epochs=3), progress=False, watch=interrupt)
    run_dir = stopped.value.run_dir
    client, run = mlflow_run(run_dir, server)
    assert run.info.status == "KILLED"
    assert "last.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    dltrain.fit(resume=run_dir, progress=False)
    client, again = mlflow_run(run_dir, server)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == list(metrics["epoch"]) == [1, 2, 3]

"""MLflow tracking (`train.logger: mlflow`): the run's config as params, each epoch's row of
metrics.csv as metrics (step = the epoch), its files as artifacts when training ends.

mlflow is an optional extra (pip install 'dltrain[mlflow]'), imported only when a run logs to it.
MLflow is never what fails a fit: a server that cannot be reached, or that refuses a call later,
is said once, and training goes on with metrics.csv alone. The MLflow run's id is kept in the run
directory (mlflow.json), so that `dltrain fit --resume` goes on with the same MLflow run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

STATE = "mlflow.json"  # in the run directory: {tracking_uri, experiment_id, run_id}
ARTIFACTS = ("best.pt", "last.pt", "config.yaml", "data.json", "metrics.csv", "curves.png")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param's value
PARAMS_PER_BATCH = 100  # MLflow's limits on one log_batch call
METRICS_PER_BATCH = 1000
# mlflow's HTTP client retries for minutes by default: a server that is down costs seconds here
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def mlflow_missing() -> bool:
    """True when the mlflow package cannot be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("mlflow") is None
    except (ImportError, ValueError):
        return True


def tracker_for(plan, run_dir: Path) -> MLflowTracker | None:
    """The run's MLflow tracker when train.logger names mlflow (rank 0 alone makes one)."""
    train = plan.train
    if "mlflow" not in train.loggers:
        return None
    return MLflowTracker(
        Path(run_dir),
        tracking_uri=train.mlflow.tracking_uri,
        experiment=train.mlflow.experiment or plan.name,
        source_dir=Path(plan.cfg.base_dir),
    )


class MLflowTracker:
    """One dltrain run as one MLflow run; every call after a failure does nothing."""

    def __init__(self, run_dir: Path, tracking_uri: str | None, experiment: str, source_dir: Path | None = None):
        self.run_dir, self.configured, self.experiment, self.source_dir = run_dir, tracking_uri, experiment, source_dir
        self.uri: str | None = None
        self.client = None
        self.run_id: str | None = None

    @property
    def active(self) -> bool:
        return self.run_id is not None

    # ----- the calls RunDir makes

    def start(self, config: dict, data: dict, history: list[dict]) -> None:
        """A new MLflow run, or the one mlflow.json names (a resumed run); mlflow.json written."""
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        stored = _read_state(self.run_dir / STATE)
        try:
            import mlflow
            from mlflow.tracking import MlflowClient

            self.uri = self.configured or (stored or {}).get("tracking_uri") or _absolute_uri(mlflow.get_tracking_uri())
            self.client = MlflowClient(self.uri)
            continued = stored is not None and stored.get("tracking_uri") == self.uri and self._continue(stored)
            if continued:
                self.run_id = stored["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
            experiment_id = self._experiment_id()
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=self._tags(data))
            self.run_id = run.info.run_id
            from dltrain.files import write_json

            write_json(self.run_dir / STATE, {"tracking_uri": self.uri, "experiment_id": experiment_id, "run_id": self.run_id})
            self._log_params(config)
            for row in history:  # a run resumed with mlflow newly named: its epochs so far
                self.epoch(row)
        except Exception as error:  # mlflow's own, requests', OSError: none of them stops training
            self.run_id = None
            self._warn(f"MLflow at {self.uri or self.configured or 'its default tracking URI'} is not reachable ({_reason(error)})")

    def epoch(self, row: dict) -> None:
        """Every number of the epoch's row (non-finite ones left out), at step = the epoch."""
        if not self.active:
            return
        from mlflow.entities import Metric

        step, stamp = int(row.get("epoch", 0)), int(time.time() * 1000)
        metrics = [
            Metric(_key(key), float(value), stamp, step)
            for key, value in row.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ]
        self._call(lambda: [self.client.log_batch(self.run_id, metrics=metrics[i : i + METRICS_PER_BATCH]) for i in range(0, len(metrics), METRICS_PER_BATCH)])

    def finish(self, status: str = "FINISHED") -> None:
        """The run directory's files as artifacts, and the run's end (FINISHED, KILLED or FAILED)."""
        if not self.active:
            return
        files = [self.run_dir / name for name in ARTIFACTS if (self.run_dir / name).is_file()]
        self._call(lambda: [self.client.log_artifact(self.run_id, str(path)) for path in files])
        self._call(lambda: self.client.set_terminated(self.run_id, status))

    # ----- helpers

    def _continue(self, stored: dict) -> bool:
        """Whether the stored run is there to go on with (a run deleted since is started anew)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(stored["run_id"])
        except MlflowException as error:
            if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return run.info.lifecycle_stage == "active"

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            if found.lifecycle_stage != "active":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except MlflowException:  # made meanwhile by another process
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _tags(self, data: dict) -> dict[str, str]:
        tags = {"dltrain.run_dir": str(self.run_dir.resolve())}
        if isinstance(data, dict) and data.get("fingerprint"):
            tags["dltrain.data_fingerprint"] = str(data["fingerprint"])
        commit = git_commit(self.source_dir) if self.source_dir is not None else None
        if commit:
            tags["git.commit"] = commit
            tags["mlflow.source.git.commit"] = commit  # what MLflow's UI shows as the source version
        return tags

    def _log_params(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in flatten(config).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + PARAMS_PER_BATCH])

    def _call(self, call) -> None:
        if not self.active:
            return
        try:
            call()
        except Exception as error:
            self.run_id = None
            self._warn(f"logging to MLflow at {self.uri} failed ({_reason(error)}): nothing more goes to MLflow this run")

    def _warn(self, message: str) -> None:
        from dltrain.console import warn

        warn(f"{message}: training goes on; metrics.csv has every epoch")


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """{"optimizer": {"lr": 0.01}} -> {"optimizer.lr": "0.01"}: dotted keys, values as text (lists
    as JSON), each cut to MLflow's 6000 characters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{_key(str(key))}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name[:250]] = text[:MAX_PARAM_LENGTH]
    return flat


def git_commit(folder: Path) -> str | None:
    """HEAD of the git repository `folder` is in; None when it is in none, or git is missing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _key(name: str) -> str:
    """A name MLflow takes as a key: letters, digits, _ - . / and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def _absolute_uri(uri: str) -> str:
    """A local store's URI with an absolute path: a resumed run finds it from any current folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:") :]).resolve().as_uri()
    if "://" not in uri and ":" not in uri.split("/", 1)[0]:
        return Path(uri).resolve().as_uri()
    return uri


def _read_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("run_id") else None


_CAUSES = re.compile(r"Connection refused|Name or service not known|nodename nor servname|No route to host|timed out|Read timed out|error code \d+")


def _reason(error: BaseException) -> str:
    """Why a call failed, in a few words: a connection's cause, else the error's first 200 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    cause = _CAUSES.search(text)
    if cause:
        return cause.group(0).replace("error code", "HTTP")
    return text if len(text) <= 200 else text[:197] + "..."

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dltrain.cli import app

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Invocation:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str) -> Invocation:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Invocation(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test decodes into a cache of its own, never into ~/.cache."""
    monkeypatch.setenv("DLTRAIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _curves_where_asked(request, monkeypatch):
    """fit draws curves.png in a process of its own; hundreds of fits in the suite would start as many
    beside it. Tests marked `curves` draw them (and so does every `dltrain` run as a subprocess)."""
    if "curves" not in request.keywords:
        import dltrain.tools.plot

        monkeypatch.setattr(dltrain.tools.plot, "leave_curves", lambda run, higher, wait=False: None)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A temporary current folder holding copies of the shipped configs and data."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("generated"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def iris_config(tmp_path: Path, body: str | None = None, **replace: str) -> Path:
    """A copy of a small iris config in tmp_path, with `data/iris.csv` beside it."""
    shutil.copy(ROOT / "data" / "iris.csv", tmp_path / "iris.csv")
    text = body or IRIS
    for old, new in replace.items():
        text = text.replace(old, new)
    return write(tmp_path / "config.yaml", text)


IRIS = """\
name: iris
seed: 0
data:
  source: iris.csv
  target: species
  split: {train: 0.7, val: 0.15, test: 0.15}
  batch_size: 16
model:
  layers:
    - Linear: 16
    - ReLU
    - Linear: auto
loss: CrossEntropyLoss
optimizer: {type: Adam, lr: 0.01}
train:
  epochs: 3
"""

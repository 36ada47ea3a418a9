"""torchrun with two processes (gloo on the CPU) on a shipped config, against one process."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT


def torchrun(*args, cwd):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dltrain", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("generated"))
    return tmp_path


def test_two_processes_match_one_and_write_one_run(project, cli, monkeypatch):
    result = torchrun("fit", "configs/penguins.yaml", "train.epochs=6", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((project / "runs").iterdir())
    assert [r.name for r in runs] == ["penguins"]  # one directory, written by rank 0 alone
    assert result.stdout.count("Best epoch") == 1 and result.stderr.count("run directory:") == 1
    monkeypatch.chdir(project)
    assert cli("fit", "configs/penguins.yaml", "train.epochs=6", "--out", "one").code == 0
    two = pd.read_csv(project / "runs" / "penguins" / "metrics.csv").drop(columns=["seconds"])
    one = pd.read_csv(project / "one" / "metrics.csv").drop(columns=["seconds"])
    assert list(two.columns) == list(one.columns) and len(two) == 6
    # the same batches, split in two and their gradients averaged: the same run up to float order
    pd.testing.assert_frame_equal(two, one, atol=2e-3, rtol=2e-2)
    state = torch.load(project / "runs" / "penguins" / "best.pt", weights_only=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    evaluated = cli("evaluate", "runs/penguins", "--json")
    assert evaluated.code == 0 and '"accuracy"' in evaluated.stdout
    predicted = cli("predict", "runs/penguins", "data/penguins.csv")
    assert predicted.code == 0 and predicted.stdout.startswith("row,prediction,prob_Adelie")


def test_resume_under_torchrun(project):
    assert torchrun("fit", "configs/iris.yaml", "train.epochs=4", "--out", "whole", cwd=project).returncode == 0
    assert torchrun("fit", "configs/iris.yaml", "train.epochs=2", "--out", "parts", cwd=project).returncode == 0
    resumed = torchrun("fit", "--resume", "parts", "train.epochs=4", cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = pd.read_csv(project / "whole" / "metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(project / "parts" / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)  # dropout included: each rank's random state is kept

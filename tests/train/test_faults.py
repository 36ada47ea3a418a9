"""Faults survived: kill -9 at any moment, a full disk, a loss that explodes, broken checkpoints."""

import errno
import random
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from dltrain import checkpoint
from dltrain.errors import CheckpointError, TrainingError, WriteError
from tests.conftest import write

CONFIG = """\
data: {source: rows.csv, target: y, batch_size: 16, split: {train: 0.8, val: 0.2}}
model: {layers: [{Linear: 64}, ReLU, {Linear: 64}, ReLU, {Linear: auto}]}
loss: CrossEntropyLoss
train: {epochs: 400}
"""


@pytest.fixture
def project(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 6))
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    table["y"] = np.where(x[:, 0] > 0, "a", "b")
    table.to_csv(tmp_path / "rows.csv", index=False)
    return write(tmp_path / "config.yaml", CONFIG)


def test_kill_9_at_random_moments_leaves_loadable_checkpoints(project, tmp_path):
    rng = random.Random(0)
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "dltrain", "fit", str(project), "--out", str(run)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    process.kill()
    process.wait()
    for attempt in range(8):
        # each round resumes the run and kills it again somewhere: inside a batch, a save, a rename
        process = subprocess.Popen([sys.executable, "-m", "dltrain", "fit", "--resume", str(run)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 3.0))
        process.kill()
        process.wait()
        for name in ("last.pt", "best.pt"):
            state = checkpoint.load(run / name).state
            assert state["model"] and state["epoch"] >= 1, (attempt, name)
    # after all that, the run resumes and finishes (how far the killed rounds got depends on the machine's load)
    reached = checkpoint.load(run / "last.pt").state["epoch"]
    finished = subprocess.run([sys.executable, "-m", "dltrain", "fit", "--resume", str(run), f"train.epochs={reached + 1}"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert checkpoint.load(run / "last.pt").state["epoch"] == reached + 1
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(1, len(metrics) + 1))


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_survives(project, tmp_path, monkeypatch):
    import dltrain.files

    calls = {"n": 0}
    real = dltrain.files.os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def fdopen(fd, *args):
        calls["n"] += 1  # config.yaml, data.json, then the first epoch's metrics.csv, best.pt, last.pt
        handle = real(fd, *args)
        return Full(handle) if calls["n"] > 5 else handle  # then the disk is full

    monkeypatch.setattr(dltrain.files.os, "fdopen", fdopen)
    with pytest.raises(WriteError) as error:
        dltrain.fit(project, ["train.epochs=5"], out=tmp_path / "run", progress=False)
    message = str(error.value)
    assert "No space left on device" in message and "Nothing was half-written" in message
    assert "dltrain fit --resume" in message
    monkeypatch.undo()
    state = checkpoint.load(tmp_path / "run" / "last.pt").state
    assert state["epoch"] == 1
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_the_epochs_files_are_fsynced_when_training_ends_not_every_epoch(project, tmp_path, monkeypatch):
    import dltrain.files

    synced = []
    real = dltrain.files.os.fsync

    def fsync(fd):
        synced.append(dltrain.files.os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(dltrain.files.os, "fsync", fsync)
    dltrain.fit(project, ["train.epochs=6"], out=tmp_path / "run", progress=False)
    names = [dltrain.files.Path(p).name for p in synced]
    # config.yaml and data.json before the first epoch (as their temporary files, before the rename);
    # the six epochs' metrics.csv, best.pt and last.pt once, with the folder, when training ends
    assert sorted(n.split(".")[1] for n in names if n.startswith(".")) == ["config", "data"]
    assert sorted(n for n in names if not n.startswith(".")) == ["best.pt", "last.pt", "metrics.csv", "run"]


def test_an_exploding_loss_stops_and_best_keeps_the_good_weights(project, tmp_path):
    overrides = [
        "optimizer={type: SGD, lr: 0.01}",
        "scheduler={type: MultiStepLR, milestones: [2], gamma: 1.0e+12}",  # at epoch 3 the steps explode
        "train.epochs=6",
    ]
    with pytest.raises(TrainingError) as error:
        dltrain.fit(project, overrides, out=tmp_path / "run", progress=False)
    assert "in epoch 3, batch" in str(error.value) and "best.pt keeps the weights of epoch 2" in str(error.value)
    best = checkpoint.load(tmp_path / "run" / "best.pt").state
    assert best["best"]["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in best["model"].values())


def test_broken_checkpoints_are_refused(project, tmp_path, cli):
    dltrain.fit(project, ["train.epochs=1"], out=tmp_path / "run", progress=False)
    data = (tmp_path / "run" / "last.pt").read_bytes()
    (tmp_path / "run" / "last.pt").write_bytes(data[: len(data) // 3])
    resumed = cli("fit", "--resume", tmp_path / "run")
    assert resumed.code == 2 and "not a readable checkpoint" in resumed.stderr
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for args in (("predict", tmp_path / "list.pt", tmp_path / "rows.csv"), ("evaluate", tmp_path / "list.pt")):
        result = cli(*args)
        assert result.code == 2 and "not a dltrain checkpoint" in result.stderr
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "nowhere.pt")

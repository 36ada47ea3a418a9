"""Ctrl-C and SIGTERM on a real `dltrain fit` process: last.pt saved mid-epoch, --resume exact."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from tests.conftest import write

CONFIG = """\
seed: 3
data: {source: rows.csv, target: y, batch_size: 8, split: {train: 0.9, val: 0.1}}
model: {layers: [{Linear: 32}, ReLU, {Dropout: 0.2}, {Linear: auto}]}
loss: CrossEntropyLoss
optimizer: {type: SGD, lr: 0.05, momentum: 0.9}
train: {epochs: 2}
"""


@pytest.fixture
def project(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30_000, 8))
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    table["y"] = np.array(["a", "b", "c"])[(x[:, :3]).argmax(1)]
    table.to_csv(tmp_path / "rows.csv", index=False)
    return write(tmp_path / "config.yaml", CONFIG)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_and_resume_matches_an_unbroken_run(project, tmp_path, sig, code):
    run = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "dltrain", "fit", str(project), "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (run / "data.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the first epoch
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert f"Continue with: dltrain fit --resume {run}" in stderr
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] < 2, "the signal should arrive before training ended"

    resumed = dltrain.fit(resume=run, progress=False)
    whole = dltrain.fit(project, out=tmp_path / "whole", progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(resumed.history, whole.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupt_at_a_known_batch_resumes_exactly(project, tmp_path, monkeypatch):
    """A real SIGINT delivered to this process after batch 1000 of epoch 2 (27,000 rows: 3,375 batches an epoch)."""
    import os

    from dltrain.train.trainer import Interrupted

    seen = {"steps": 0}
    step = torch.optim.SGD.step

    def counted(self, *args, **kwargs):
        seen["steps"] += 1
        if seen["steps"] == 1 + 3375 + 1000:  # the first step is the rehearsal before training
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", counted)
    with pytest.raises(Interrupted):
        dltrain.fit(project, out=tmp_path / "stopped", progress=False)
    state = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 1000)
    monkeypatch.undo()
    resumed = dltrain.fit(resume=tmp_path / "stopped", progress=False)
    whole = dltrain.fit(project, out=tmp_path / "whole", progress=False)
    for a, b in zip(resumed.history, whole.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    a = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

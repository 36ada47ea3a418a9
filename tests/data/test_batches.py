"""Batches: slices of tensors in memory; with data.in_memory: false the same encoders, batches read
from disk, exact resume."""

import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch

import dltrain
from dltrain.data import tables
from dltrain.data.batches import TableStream, TensorSplit
from dltrain.data.sources import ResolvedSource
from dltrain.data.tables import ChunkedTable
from dltrain.train.trainer import Interrupted


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 5))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    frame["colour"] = rng.choice(["red", "green", "blue"], 3000)
    frame.loc[::17, "x1"] = np.nan
    frame["y"] = np.where(x[:, 0] + (frame["colour"] == "red") > 0.3, "yes", "no")
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    return tmp_path


def config(path, **data):
    return {
        "seed": 1,
        "data": {"source": str(path), "target": "y", "batch_size": 64, **data},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.01},
        "train": {"epochs": 4},
    }


@pytest.mark.parametrize("file", ["t.parquet", "t.csv"])
def test_streaming_fits_the_same_encoders_and_learns_as_well(table, file, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 700)  # several chunks
    memory = dltrain.check(config(table / file))
    streamed = dltrain.check(config(table / file, in_memory=False))
    a, b = memory.data.schema.to_dict(), streamed.data.schema.to_dict()
    for left, right in zip(a["inputs"], b["inputs"]):
        assert left.keys() == right.keys()
        for key in left:
            if isinstance(left[key], float):
                assert left[key] == pytest.approx(right[key], rel=1e-9), key
            else:
                assert left[key] == right[key], key
    assert all(torch.equal(memory.data.info["indices"][k], streamed.data.info["indices"][k]) for k in memory.data.info["indices"])
    assert memory.data.info["fingerprint"] == streamed.data.info["fingerprint"]
    in_memory = dltrain.fit(config(table / file), out=table / "m", progress=False)
    from_disk = dltrain.fit(config(table / file, in_memory=False), out=table / "s", progress=False)
    assert abs(in_memory.history[-1]["val_accuracy"] - from_disk.history[-1]["val_accuracy"]) < 0.05
    assert from_disk.history[-1]["val_accuracy"] > 0.9


def test_tensor_batches_are_slices_in_the_order_given():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    split = TensorSplit(x, y, np.arange(10))
    assert [b.tolist() for _, b in split.batches(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.tolist() for _, b in split.batches(4, count=2)] == [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]  # the last takes the rest
    order = split.draw_order(torch.Generator().manual_seed(0))
    shuffled = list(split.batches(4, order=order, start=1))
    assert [b.tolist() for _, b in shuffled] == [order[4:8].tolist(), order[8:].tolist()]
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in shuffled)
    halves = list(split.batches(4, share=lambda lo, hi: (lo, (lo + hi) // 2)))  # one rank's part of each batch
    assert [b.tolist() for _, b in halves] == [[0, 1], [4, 5], [8]]


def test_table_stream_batches_cover_each_row_once_and_follow_their_seed(table, monkeypatch):
    built = dltrain.check(config(table / "t.parquet"))
    rows = np.sort(built.data.splits["train"].rows)
    source = ChunkedTable({"": ResolvedSource("parquet", path=str(table / "t.parquet"))})
    stream = TableStream(source, rows, torch.arange(len(rows)), built.data.schema, "t")  # targets: positions
    monkeypatch.setattr(tables, "CHUNK_ROWS", 500)
    seed = {n: torch.tensor([n]) for n in (5, 6)}
    first = list(stream.batches(100, order=seed[5]))
    again = list(stream.batches(100, order=seed[5]))
    other = list(stream.batches(100, order=seed[6]))
    later = list(stream.batches(100, order=seed[5], start=7))
    positions = torch.cat([at for _, at in first])
    assert sorted(positions.tolist()) == list(range(len(rows)))
    assert [len(at) for _, at in first[:-1]] == [100] * (len(first) - 1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(first[7:], later))


def test_a_streamed_run_resumes_exactly_from_the_middle_of_an_epoch(table, monkeypatch):
    seen = {"steps": 0}
    step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        seen["steps"] += 1
        if seen["steps"] == 40 + 10:  # 2,400 training rows: 38 batches of 64 in the first epoch
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    with pytest.raises(Interrupted):
        dltrain.fit(config(table / "t.csv", in_memory=False), out=table / "stopped", progress=False)
    monkeypatch.undo()
    resumed = dltrain.fit(resume=table / "stopped", progress=False)
    whole = dltrain.fit(config(table / "t.csv", in_memory=False), out=table / "whole", progress=False)
    for a, b in zip(resumed.history, whole.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == pytest.approx({k: v for k, v in b.items() if k != "seconds"})
    assert len(resumed.history) == 4

"""What a trainer costs per step when the model costs almost nothing.

A Linear(32, 4) on W1's rows at batch 32, 3 epochs: the forward, backward and Adam step take a few
microseconds, so the time per step is mostly the trainer's own work (indexing, bookkeeping, hooks,
logging). dltrain's loop, a hand-written loop and a DataLoader loop run in this process,
interleaved; PyTorch Lightning and Keras when installed. Prints microseconds per step.

    python benchmarks/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dltrain  # noqa: E402
from benchmarks.tabular import make_table  # noqa: E402

BATCH, EPOCHS = 32, 3


def lightning(x, y, xv, yv, steps: int) -> float:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.loss = nn.Linear(32, 4), nn.CrossEntropyLoss()

        def training_step(self, batch, index):
            return self.loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, index):
            self.log("val_loss", self.loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters())

    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, num_sanity_val_steps=0, logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=BATCH)
    start = time.perf_counter()
    trainer.fit(Module(), train, val)
    return (time.perf_counter() - start) / steps * 1e6


def keras_fit(x, y, xv, yv, steps: int) -> float:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x.numpy(), y.numpy(), batch_size=BATCH, epochs=EPOCHS, validation_data=(xv.numpy(), yv.numpy()), verbose=0)
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        make_table(args.rows).to_parquet(path)
        config = {
            "data": {"source": str(path), "target": "label", "split": {"train": 0.9, "val": 0.1}, "batch_size": BATCH},
            "model": {"layers": [{"Linear": "auto"}]},
            "loss": "CrossEntropyLoss",
            "train": {"epochs": EPOCHS, "out_dir": str(Path(tmp) / "runs"), "metrics": ["accuracy"]},
        }
        built = dltrain.check(config)
        x, y = built.data.splits["train"].x, built.data.splits["train"].y
        xv, yv = built.data.splits["val"].x, built.data.splits["val"].y
        steps = EPOCHS * (-(-x.shape[0] // BATCH))

        def hand() -> float:
            net = nn.Linear(32, 4)
            optimizer = torch.optim.Adam(net.parameters())
            loss_fn = nn.CrossEntropyLoss()
            seconds = 0.0
            for _ in range(EPOCHS):
                start = time.perf_counter()
                order = torch.randperm(x.shape[0])
                for lo in range(0, x.shape[0], BATCH):
                    index = order[lo : lo + BATCH]
                    loss = loss_fn(net(x[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    for lo in range(0, xv.shape[0], BATCH):
                        net(xv[lo : lo + BATCH])
                seconds += time.perf_counter() - start
            return seconds / steps * 1e6

        def loader() -> float:
            from torch.utils.data import DataLoader, TensorDataset

            net = nn.Linear(32, 4)
            optimizer = torch.optim.Adam(net.parameters())
            loss_fn = nn.CrossEntropyLoss()
            train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
            val = DataLoader(TensorDataset(xv, yv), batch_size=BATCH)
            seconds = 0.0
            for _ in range(EPOCHS):
                start = time.perf_counter()
                for xb, yb in train:
                    loss = loss_fn(net(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    for xb, _ in val:
                        net(xb)
                seconds += time.perf_counter() - start
            return seconds / steps * 1e6

        def fit() -> float:
            result = dltrain.fit(config, progress=False)
            return sum(r["seconds"] for r in result.history) / steps * 1e6

        trials = {"dltrain fit": fit, "hand-written loop": hand, "DataLoader loop": loader}
        if importlib.util.find_spec("pytorch_lightning"):
            trials["Lightning (no bar, no logger)"] = lambda: lightning(x, y, xv, yv, steps)
        if importlib.util.find_spec("keras"):
            trials["Keras 3 (torch backend)"] = lambda: keras_fit(x, y, xv, yv, steps)
        hand(), fit()  # warm-up
        results = {name: [] for name in trials}
        for _ in range(args.repeats):
            for name, trial in trials.items():
                results[name].append(trial())
    print(f"Linear(32, 4), batch {BATCH}, {steps:,} steps, {torch.get_num_threads()} threads: microseconds per step (validation included)")
    for name, values in results.items():
        print(f"  {name:<30} {statistics.median(values):6.1f}  ({min(values):.1f} - {max(values):.1f})")


if __name__ == "__main__":
    main()

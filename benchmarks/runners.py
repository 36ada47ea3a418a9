"""One trainer on one workload, in its own process: `python -m benchmarks.runners RUNNER WORKLOAD DATA`.

Prints one JSON line: training samples/s (rows x epochs over the epochs' seconds, training and
validation passes), the set-up seconds before the first epoch, and the process's peak memory.
The suite (benchmarks/suite.py) times the whole process from outside, imports included.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

WORKLOADS = {
    "W1": {"kind": "table", "batch": 256, "epochs": 3},
    "W2": {"kind": "table", "batch": 32, "epochs": 3},
    "W3": {"kind": "images", "batch": 128, "epochs": 2},
    "D": {"kind": "images", "batch": 128, "epochs": 2},  # W3 with the decoding of the files counted
}
CLASSES_TABLE, CLASSES_IMAGES = 4, 10


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----- the same data for every trainer: the rows dltrain trains and validates on, already encoded


def tensors(workload: str, data: Path):
    """(x_train, y_train, x_val, y_val) as float32 / int64 NumPy arrays, normalized as dltrain does."""
    arrays = np.load(data / f"{WORKLOADS[workload]['kind']}_tensors.npz")
    return arrays["x"], arrays["y"], arrays["xv"], arrays["yv"]


def model_torch(workload: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if WORKLOADS[workload]["kind"] == "table":
        return nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES_TABLE))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, CLASSES_IMAGES),
    )  # fmt: skip


def dltrain_config(workload: str, data: Path) -> dict:
    spec = WORKLOADS[workload]
    if spec["kind"] == "table":
        layers = [{"Linear": 128}, "ReLU", {"Linear": 128}, "ReLU", {"Linear": "auto"}]
        source, target = str(data / "table.parquet"), "label"
    else:
        layers = [
            {"Conv2d": {"out_channels": 16, "kernel_size": 3, "padding": 1}}, "ReLU", {"MaxPool2d": 2},
            {"Conv2d": {"out_channels": 32, "kernel_size": 3, "padding": 1}}, "ReLU", {"MaxPool2d": 2},
            "Flatten", {"Linear": 64}, "ReLU", {"Linear": "auto"},
        ]  # fmt: skip
        source, target = str(data / "images"), None
    config = {
        "name": workload,
        "data": {"source": source, "split": {"train": 0.9, "val": 0.1}, "batch_size": spec["batch"]},
        "model": {"layers": layers},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 1e-3},
        "train": {"epochs": spec["epochs"], "out_dir": str(data / "runs"), "metrics": ["accuracy"]},
    }
    if target:
        config["data"]["target"] = target
    config["train"].update(json.loads(os.environ.get("BENCH_TRAIN", "{}")))  # switches under test (benchmarks/switches.py)
    return config


# ----- the trainers


def run_dltrain(workload: str, data: Path) -> dict:
    import dltrain

    start = time.perf_counter()
    result = dltrain.fit(dltrain_config(workload, data), progress=False)
    seconds = sum(r["seconds"] for r in result.history)
    rows = int(json.loads((data / f"{WORKLOADS[workload]['kind']}_rows.json").read_text())["train"])
    return {"samples_per_s": rows * len(result.history) / seconds, "setup_s": time.perf_counter() - start - seconds}


def _loop(net, batches, validation, epochs: int) -> float:
    import torch
    from torch import nn

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        net.train()
        total = torch.zeros(())
        for x, y in batches():
            loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in validation():
                correct += int((net(x).argmax(1) == y).sum())
        _ = float(total), correct
        seconds += time.perf_counter() - start
    return seconds


def run_hand(workload: str, data: Path) -> dict:
    """The loop a PyTorch user writes over tensors built once: the ceiling."""
    import torch

    start = time.perf_counter()
    x, y, xv, yv = (torch.from_numpy(a) for a in tensors(workload, data))
    spec = WORKLOADS[workload]
    n, size = x.shape[0], spec["batch"]
    net = model_torch(workload)
    layout = None
    if os.environ.get("BENCH_CHANNELS_LAST") and x.dim() == 4:  # benchmarks/switches.py
        net = net.to(memory_format=torch.channels_last)

        def layout(t):
            return t.contiguous(memory_format=torch.channels_last)

    def batches():
        order = torch.randperm(n)
        for lo in range(0, n, size):
            index = order[lo : lo + size]
            yield (x[index] if layout is None else layout(x[index])), y[index]

    def validation():
        for lo in range(0, xv.shape[0], size):
            yield (xv[lo : lo + size] if layout is None else layout(xv[lo : lo + size])), yv[lo : lo + size]

    setup = time.perf_counter() - start
    seconds = _loop(net, batches, validation, spec["epochs"])
    return {"samples_per_s": n * spec["epochs"] / seconds, "setup_s": setup}


def run_dataloader(workload: str, data: Path) -> dict:
    """The same loop fed by TensorDataset + DataLoader."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    start = time.perf_counter()
    x, y, xv, yv = (torch.from_numpy(a) for a in tensors(workload, data))
    spec = WORKLOADS[workload]
    train = DataLoader(TensorDataset(x, y), batch_size=spec["batch"], shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=spec["batch"])
    net = model_torch(workload)
    setup = time.perf_counter() - start
    seconds = _loop(net, lambda: iter(train), lambda: iter(val), spec["epochs"])
    return {"samples_per_s": x.shape[0] * spec["epochs"] / seconds, "setup_s": setup}


def run_pillow(workload: str, data: Path) -> dict:
    """The tutorial way for images: a Dataset that opens each PNG with Pillow, every epoch."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    start = time.perf_counter()
    listing = json.loads((data / "W3_files.json").read_text())
    mean, std = listing["mean"], listing["std"]

    class Pngs(Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            with Image.open(path) as image:
                pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.uint8).copy())
            return pixels.float().div(255).sub(mean).div(std)[None], label

    spec = WORKLOADS[workload]
    train = DataLoader(Pngs(listing["train"]), batch_size=spec["batch"], shuffle=True)
    val = DataLoader(Pngs(listing["val"]), batch_size=spec["batch"])
    net = model_torch(workload)
    setup = time.perf_counter() - start
    seconds = _loop(net, lambda: iter(train), lambda: iter(val), spec["epochs"])
    return {"samples_per_s": len(listing["train"]) * spec["epochs"] / seconds, "setup_s": setup}


def _lightning(workload: str, data: Path, defaults: bool) -> dict:
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    start = time.perf_counter()
    x, y, xv, yv = (torch.from_numpy(a) for a in tensors(workload, data))
    spec = WORKLOADS[workload]

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model_torch(workload)
            self.loss = nn.CrossEntropyLoss()

        def training_step(self, batch, index):
            inputs, target = batch
            loss = self.loss(self.net(inputs), target)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, index):
            inputs, target = batch
            output = self.net(inputs)
            self.log("val_loss", self.loss(output, target))
            self.log("val_accuracy", (output.argmax(1) == target).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    options = {} if defaults else {"logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False}
    trainer = pl.Trainer(
        max_epochs=spec["epochs"], accelerator="cpu", devices=1, num_sanity_val_steps=0,
        default_root_dir=str(data / "lightning"), **options,
    )  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=spec["batch"], shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=spec["batch"])
    module = Module()
    setup = time.perf_counter() - start
    begun = time.perf_counter()
    trainer.fit(module, train, val)
    seconds = time.perf_counter() - begun
    return {"samples_per_s": x.shape[0] * spec["epochs"] / seconds, "setup_s": setup}


def run_lightning(workload: str, data: Path) -> dict:
    return _lightning(workload, data, defaults=False)


def run_lightning_defaults(workload: str, data: Path) -> dict:
    return _lightning(workload, data, defaults=True)


def run_keras(workload: str, data: Path) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    start = time.perf_counter()
    x, y, xv, yv = tensors(workload, data)
    spec = WORKLOADS[workload]
    keras.utils.set_random_seed(0)
    if spec["kind"] == "table":
        layers = [keras.Input((32,)), keras.layers.Dense(128, "relu"), keras.layers.Dense(128, "relu"), keras.layers.Dense(CLASSES_TABLE)]
    else:
        x, xv = x.transpose(0, 2, 3, 1), xv.transpose(0, 2, 3, 1)  # Keras' images are channels last
        layers = [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(64, "relu"), keras.layers.Dense(CLASSES_IMAGES),
        ]  # fmt: skip
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    setup = time.perf_counter() - start
    begun = time.perf_counter()
    model.fit(x, y, batch_size=spec["batch"], epochs=spec["epochs"], validation_data=(xv, yv), verbose=0, shuffle=True)
    seconds = time.perf_counter() - begun
    return {"samples_per_s": x.shape[0] * spec["epochs"] / seconds, "setup_s": setup}


def run_first_step(workload: str, data: Path) -> dict:
    """For start-up: print the wall clock at the first optimizer step of `dltrain fit`, then stop."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import dltrain

    def first(optimizer, args, kwargs):
        print(json.dumps({"first_step_at": time.time()}), flush=True)
        os._exit(0)

    register_optimizer_step_post_hook(first)
    dltrain.fit(str(data), ["train.epochs=1"], out=Path(os.environ["BENCH_OUT"]), progress=False)
    return {"torch": torch.__version__}


RUNNERS = {
    "dltrain": run_dltrain,
    "hand": run_hand,
    "dataloader": run_dataloader,
    "pillow": run_pillow,
    "lightning": run_lightning,
    "lightning_defaults": run_lightning_defaults,
    "keras": run_keras,
    "first_step": run_first_step,
}


def main() -> None:
    runner, workload, data = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    result = RUNNERS[runner](workload, data)
    print(json.dumps({**result, "peak_mb": peak_mb()}))


if __name__ == "__main__":
    main()

"""W3: 20,000 grayscale 28x28 PNG images in 10 classes, a small CNN, batch 128, 2 epochs with validation.

The CNN is Conv(16)-Pool-Conv(32)-Pool-Linear(64)-Linear(10). Prints the decode time of dltrain's
first run and of a cached run, and training images/s of:
- `dltrain.fit` on a config (images decoded once, kept as uint8, normalized per batch),
- a hand-written loop over pre-decoded, pre-normalized tensors (the ceiling),
- a torchvision-style `Dataset` + `DataLoader` that opens every PNG with Pillow each epoch, as
  most tutorials do (with 0 and with 2 worker processes),
interleaved round by round; then the ratios and the peak resident memory.

    python benchmarks/images.py [--images 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dltrain  # noqa: E402
from benchmarks.common import interleave, machine, peak_rss_mb, ratio, summary  # noqa: E402

EPOCHS, BATCH, CLASSES = 2, 128, 10


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """Ten classes of polygons (3 to 7 sides, filled or outlined) on noisy grey, 28x28 PNG."""
    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        c = i % CLASSES
        image = Image.fromarray((rng.random((28, 28)) * 70).astype(np.uint8), "L")
        pen = ImageDraw.Draw(image)
        r = rng.uniform(6, 11)
        x, y = rng.uniform(r + 1, 27 - r, 2)
        sides, outline = 3 + c % 5, c >= 5
        pen.regular_polygon((x, y, r), sides, rotation=rng.uniform(0, 360), fill=None if outline else 230, outline=230 if outline else None, width=2)
        image.save(folder / f"class{c}" / f"{i:06d}.png")


def layers() -> list:
    return [
        {"Conv2d": {"out_channels": 16, "kernel_size": 3, "padding": 1}}, "ReLU", {"MaxPool2d": 2},
        {"Conv2d": {"out_channels": 32, "kernel_size": 3, "padding": 1}}, "ReLU", {"MaxPool2d": 2},
        "Flatten", {"Linear": 64}, "ReLU", {"Linear": "auto"},
    ]  # fmt: skip


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, CLASSES),
    )  # fmt: skip


def train_loop(batches_of_epoch, validation_batches) -> float:
    """A hand-written loop over whatever gives (x, y) batches; returns the summed epoch seconds."""
    net = model()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    seconds = 0.0
    for _ in range(EPOCHS):
        start = time.perf_counter()
        net.train()
        for x, y in batches_of_epoch():
            loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in validation_batches())
        _ = correct
        seconds += time.perf_counter() - start
    return seconds


class PngDataset(torch.utils.data.Dataset):
    """The tutorial way: each item opens its file with Pillow, every epoch."""

    def __init__(self, paths: list[str], labels: list[int], mean: float, std: float):
        self.paths, self.labels, self.mean, self.std = paths, labels, mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.uint8).copy())
        return (pixels.float().div(255).sub(self.mean).div(self.std))[None], self.labels[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["DLTRAIN_CACHE"] = str(tmp / "cache")
        start = time.perf_counter()
        make_images(tmp / "images", args.images)
        print(f"W3: {args.images:,} PNG images written in {time.perf_counter() - start:.1f} s; machine: {machine()}")
        config = {
            "name": "w3",
            "data": {"source": str(tmp / "images"), "split": {"train": 0.9, "val": 0.1}, "batch_size": BATCH},
            "model": {"layers": layers()},
            "loss": "CrossEntropyLoss",
            "optimizer": {"type": "Adam", "lr": 1e-3},
            "train": {"epochs": EPOCHS, "out_dir": str(tmp / "runs"), "metrics": ["accuracy"]},
        }
        start = time.perf_counter()
        built = dltrain.check(config)
        first = time.perf_counter() - start
        start = time.perf_counter()
        built = dltrain.check(config)
        cached = time.perf_counter() - start
        print(f"dltrain set-up (list, decode, normalize statistics, build): first run {first:.2f} s, cached run {cached:.2f} s")

        train, val = built.data.splits["train"], built.data.splits["val"]
        to_model = built.data.schema.batch_transform(train=False)
        x, y = to_model(train.x), train.y  # pre-decoded and pre-normalized, for the ceiling
        xv, yv = to_model(val.x), val.y
        rows = x.shape[0]
        print(f"{rows:,} training images, {xv.shape[0]:,} validation images, batch {BATCH}, {EPOCHS} epochs")

        def tensors() -> float:
            def epoch():
                order = torch.randperm(rows)
                for lo in range(0, rows, BATCH):
                    index = order[lo : lo + BATCH]
                    yield x[index], y[index]

            def validation():
                for lo in range(0, xv.shape[0], BATCH):
                    yield xv[lo : lo + BATCH], yv[lo : lo + BATCH]

            return rows * EPOCHS / train_loop(epoch, validation)

        table = built.data
        paths = table.info["indices"]
        source = dltrain_table(tmp / "images")
        mean, std = table.schema.media.mean[0], table.schema.media.std[0]
        classes = list(built.task.classes)
        train_set = PngDataset([source[i][0] for i in paths["train"]], [classes.index(source[i][1]) for i in paths["train"]], mean, std)
        val_set = PngDataset([source[i][0] for i in paths["val"]], [classes.index(source[i][1]) for i in paths["val"]], mean, std)

        def loader(workers: int):
            def trial() -> float:
                train_loader = torch.utils.data.DataLoader(train_set, BATCH, shuffle=True, num_workers=workers)
                val_loader = torch.utils.data.DataLoader(val_set, BATCH, num_workers=workers)
                return rows * EPOCHS / train_loop(lambda: iter(train_loader), lambda: iter(val_loader))

            return trial

        def fit() -> float:
            result = dltrain.fit(config, progress=False)
            return rows * EPOCHS / sum(r["seconds"] for r in result.history)

        tensors()  # warm-up
        results = interleave(
            {
                "dltrain.fit": fit,
                "hand-written, tensors": tensors,
                "hand-written, tensors again": tensors,
                "DataLoader + Pillow, 0 workers": loader(0),
                "DataLoader + Pillow, 2 workers": loader(2),
            },
            args.repeats,
        )

    print()
    print(f"{'':<32} {'images/s, median (min - max)':>32}")
    for name, values in results.items():
        print(f"{name:<32} {summary(values):>32}")
    print()
    print(f"ratio dltrain / hand-written tensors:        {ratio(results['dltrain.fit'], results['hand-written, tensors'])}")
    print(f"noise floor, hand-written / itself:          {ratio(results['hand-written, tensors again'], results['hand-written, tensors'])}")
    print(f"ratio dltrain / DataLoader + Pillow (0):     {ratio(results['dltrain.fit'], results['DataLoader + Pillow, 0 workers'])}")
    print(f"ratio dltrain / DataLoader + Pillow (2):     {ratio(results['dltrain.fit'], results['DataLoader + Pillow, 2 workers'])}")
    print(f"decode: first run {first:.2f} s, cached run {cached:.2f} s")
    print(f"peak resident memory of this process: {peak_rss_mb():,.0f} MB")


def dltrain_table(folder: Path) -> list[tuple[str, str]]:
    from dltrain.data.images import image_folder_table

    frame = image_folder_table(folder)
    return list(zip(frame["path"], frame["label"]))


if __name__ == "__main__":
    main()

"""The hand-written scripts that `benchmarks/whole.py` times against `dltrain fit`, `predict` and
`evaluate`: what a person writes in an afternoon with pandas, Pillow and torch, doing the same work.

    python benchmarks/hand.py fit-table CSV TARGET OUT --batch 256 --epochs 3 --split 0.9 0.1 --hidden 128 128
    python benchmarks/hand.py fit-images FOLDER OUT --batch 128 --epochs 2 --split 0.9 0.1
    python benchmarks/hand.py predict-table OUT CSV PREDICTIONS
    python benchmarks/hand.py predict-images OUT FOLDER PREDICTIONS
    python benchmarks/hand.py evaluate-table OUT CSV RESULT

fit: read, encode (standardize with the training rows' statistics, labels to integers), split at
random, the same model, optimizer and epochs, a validation pass and a checkpoint (`last.pt`, and
`best.pt` when the validation loss improves) every epoch, a line of metrics per epoch.
predict / evaluate: load that checkpoint, read and encode the rows, run the model, write the file.
Standalone on purpose: nothing of dltrain is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn


def mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    layers, width = [], inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, outputs))


def cnn(classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, classes),
    )  # fmt: skip


def split_rows(n: int, fractions: list[float], seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


def train(model, x, y, xv, yv, batch: int, epochs: int, out: Path, meta: dict, lr: float) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best = float("inf")
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), batch):
            index = order[i : i + batch]
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        model.eval()
        with torch.no_grad():
            outputs = torch.cat([model(xv[i : i + 1024]) for i in range(0, len(xv), 1024)])
            val_loss = loss_fn(outputs, yv).item()
            val_accuracy = (outputs.argmax(1) == yv).float().mean().item()
        print(f"epoch {epoch}: train_loss {total / len(x):.4f} val_loss {val_loss:.4f} val_accuracy {val_accuracy:.4f}")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, **meta}
        torch.save(state, out / "last.pt")
        if val_loss < best:
            best = val_loss
            torch.save(state, out / "best.pt")


def fit_table(args) -> None:
    torch.manual_seed(0)
    table = pd.read_csv(args.data)
    features = [c for c in table.columns if c != args.target]
    classes = sorted(table[args.target].unique())
    x = torch.tensor(table[features].to_numpy(np.float32))
    y = torch.tensor(table[args.target].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64))
    parts = split_rows(len(x), args.split)
    mean, std = x[parts[0]].mean(0), x[parts[0]].std(0)
    x = (x - mean) / std
    model = mlp(len(features), args.hidden, len(classes))
    meta = {"features": features, "classes": classes, "mean": mean, "std": std, "hidden": args.hidden}
    train(model, x[parts[0]], y[parts[0]], x[parts[1]], y[parts[1]], args.batch, args.epochs, Path(args.out), meta, args.lr)


def read_images(paths: list[str]) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("L")) for p in paths]))[:, None]


def fit_images(args) -> None:
    torch.manual_seed(0)
    folder = Path(args.data)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        names = sorted(os.listdir(folder / c))
        paths += [str(folder / c / n) for n in names]
        labels += [i] * len(names)
    x, y = read_images(paths), torch.tensor(labels)
    parts = split_rows(len(x), args.split)
    mean, std = x[parts[0]].float().mean() / 255, x[parts[0]].float().std() / 255
    x = (x.float() / 255 - mean) / std
    meta = {"classes": classes, "mean": mean, "std": std}
    train(cnn(len(classes)), x[parts[0]], y[parts[0]], x[parts[1]], y[parts[1]], args.batch, args.epochs, Path(args.out), meta, args.lr)


def load(out: str):
    state = torch.load(Path(out) / "best.pt", weights_only=False)
    if "features" in state:
        model = mlp(len(state["features"]), state["hidden"], len(state["classes"]))
    else:
        model = cnn(len(state["classes"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def run(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])


def write(frame: pd.DataFrame, classes: list, probs: torch.Tensor, path: str) -> None:
    frame["prediction"] = np.asarray(classes, dtype=object)[probs.argmax(1).numpy()]
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = probs[:, i].numpy()
    frame.to_csv(path, index=False)


def predict_table(args) -> None:
    model, state = load(args.out)
    table = pd.read_csv(args.data)
    x = (torch.tensor(table[state["features"]].to_numpy(np.float32)) - state["mean"]) / state["std"]
    write(pd.DataFrame(index=range(len(table))), state["classes"], run(model, x).softmax(1), args.result)


def predict_images(args) -> None:
    model, state = load(args.out)
    paths = sorted(str(p) for p in Path(args.data).rglob("*.png"))
    x = (read_images(paths).float() / 255 - state["mean"]) / state["std"]
    write(pd.DataFrame({"path": paths}), state["classes"], run(model, x).softmax(1), args.result)


def evaluate_table(args) -> None:
    model, state = load(args.out)
    table = pd.read_csv(args.data)
    x = (torch.tensor(table[state["features"]].to_numpy(np.float32)) - state["mean"]) / state["std"]
    y = torch.tensor(table[args.target].map({c: i for i, c in enumerate(state["classes"])}).to_numpy(np.int64))
    outputs = run(model, x)
    matrix = torch.zeros(len(state["classes"]), len(state["classes"]), dtype=torch.long)
    matrix.index_put_((y, outputs.argmax(1)), torch.ones(len(y), dtype=torch.long), accumulate=True)
    result = {
        "rows": len(y),
        "metrics": {"loss": nn.functional.cross_entropy(outputs, y).item(), "accuracy": (outputs.argmax(1) == y).float().mean().item()},
        "confusion_matrix": {"labels": state["classes"], "matrix": matrix.tolist()},
    }
    Path(args.result).write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["fit-table", "fit-images", "predict-table", "predict-images", "evaluate-table"])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--split", type=float, nargs="+", default=[0.9, 0.1])
    parser.add_argument("--hidden", type=int, nargs="*", default=[128, 128])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--target", default="label")
    args = parser.parse_args()
    if args.what == "fit-table":
        args.data, args.target, args.out = args.paths
        fit_table(args)
    elif args.what == "fit-images":
        args.data, args.out = args.paths
        fit_images(args)
    else:
        args.out, args.data, args.result = args.paths
        {"predict-table": predict_table, "predict-images": predict_images, "evaluate-table": evaluate_table}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())

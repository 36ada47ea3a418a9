"""The benchmark suite: dltrain against a hand-written loop, a DataLoader loop, PyTorch Lightning and
Keras 3 (torch backend) on the workloads of ../shared/MEASURED.md, interleaved.

    python -m benchmarks [--repeats 3] [--only W1 W2 W3 D] [--no-scaling] [--no-startup]
    make bench

W1: 100,000 rows x 32 features, 4 classes, MLP 32-128-128-4, batch 256, 3 epochs.
W2: the same at batch 32. W3: 20,000 grayscale 28x28 PNG images in 10 classes, the CNN
Conv(16)-Pool-Conv(32)-Pool-Linear(64)-Linear(10), batch 128, 2 epochs. D: W3 where the images
are decoded as part of the run: dltrain's first run (decoding, then training from tensors), its
second run (the decode cache), and a Dataset that opens every PNG with Pillow each epoch.

Every trial is a fresh process, run in rounds (A B C ... A B C ...) so that drift in the machine hits
all alike. Samples/s counts the epochs' seconds (training and validation passes); set-up, the
process's whole wall time (imports included) and its peak memory are reported beside it. Lightning
and Keras run when installed (`pip install -e '.[bench]'`). The Markdown table goes to
benchmarks/RESULTS.md and into README.md between the bench markers.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.images import make_images  # noqa: E402
from benchmarks.tabular import make_table  # noqa: E402

LABELS = {
    "dltrain": "dltrain fit",
    "hand": "hand-written loop over tensors",
    "dataloader": "DataLoader loop",
    "pillow": "Dataset + DataLoader, Pillow each epoch",
    "lightning": "Lightning (no bar, no logger)",
    "lightning_defaults": "Lightning (defaults)",
    "keras": "Keras 3 (torch backend)",
    "dltrain_cold": "dltrain fit, first run (decodes)",
}


def available(runner: str) -> bool:
    module = {"lightning": "pytorch_lightning", "lightning_defaults": "pytorch_lightning", "keras": "keras"}.get(runner)
    return module is None or importlib.util.find_spec(module) is not None


def trial(runner: str, workload: str, data: Path, env: dict | None = None) -> dict:
    """One fresh process; its own figures and the wall time of the whole process."""
    start = time.perf_counter()
    name = "dltrain" if runner == "dltrain_cold" else runner
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.runners", name, workload, str(data)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{runner} on {workload} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": wall}


def prepare(folder: Path, images: int, rows: int) -> None:
    """The data every trainer reads: a Parquet table and PNG files, and the tensors dltrain makes of them."""
    import numpy as np

    import dltrain
    from benchmarks.runners import dltrain_config

    os.environ["DLTRAIN_CACHE"] = str(folder / "cache")
    make_table(rows).to_parquet(folder / "table.parquet")
    make_images(folder / "images", images)
    for workload, kind in (("W1", "table"), ("W3", "images")):
        built = dltrain.check(dltrain_config(workload, folder))
        train, val = built.data.splits["train"], built.data.splits["val"]
        transform = built.data.schema.batch_transform(train=False)
        x = transform(train.x) if transform else train.x
        xv = transform(val.x) if transform else val.x
        np.savez(folder / f"{kind}_tensors.npz", x=x.numpy(), y=train.y.numpy(), xv=xv.numpy(), yv=val.y.numpy())
        (folder / f"{kind}_rows.json").write_text(json.dumps({"train": int(train.y.shape[0])}))
        if kind == "images":
            from dltrain.data.images import image_folder_table

            table = image_folder_table(folder / "images")
            classes = list(built.task.classes)
            media = built.data.schema.media
            listing = {
                split: [[table["path"][i], classes.index(table["label"][i])] for i in built.data.info["indices"][split].tolist()]
                for split in ("train", "val")
            }
            (folder / "W3_files.json").write_text(json.dumps({**listing, "mean": media.mean[0], "std": media.std[0]}))


def measure(workloads: list[str], repeats: int, folder: Path) -> dict:
    plans = {
        "W1": ["dltrain", "hand", "dataloader", "lightning", "lightning_defaults", "keras"],
        "W2": ["dltrain", "hand", "dataloader", "lightning", "lightning_defaults", "keras"],
        "W3": ["dltrain", "hand", "dataloader", "lightning", "lightning_defaults", "keras"],
        "D": ["dltrain_cold", "dltrain", "pillow", "hand"],
    }
    results: dict = {}
    for workload in workloads:
        runners = [r for r in plans[workload] if available(r)]
        results[workload] = {r: [] for r in runners}
        trial("hand", workload, folder)  # warm-up: file caches
        for round_ in range(repeats):
            for runner in runners:
                env = None
                if runner == "dltrain_cold":  # an empty decode cache: the first run on these files
                    cold = folder / f"cold-{round_}"
                    shutil.rmtree(cold, ignore_errors=True)
                    env = {"DLTRAIN_CACHE": str(cold)}
                result = trial(runner, workload, folder, env)
                results[workload][runner].append(result)
                print(f"  {workload} round {round_ + 1}/{repeats}  {LABELS[runner]:<42} {result['samples_per_s']:>10,.0f} samples/s", flush=True)
    return results


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f} - {max(values):,.0f})"


def table(results: dict) -> list[str]:
    lines = [
        "| workload | trainer | samples/s, median (min - max) | ratio to hand-written, median of rounds (min - max) | set-up s | process wall s | peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workload, runners in results.items():
        hand = [t["samples_per_s"] for t in runners["hand"]]
        for runner, trials in runners.items():
            speeds = [t["samples_per_s"] for t in trials]
            # each round's ratio: the two ran minutes apart at most, so drift in the machine cancels
            ratios = [a / b for a, b in zip(speeds, hand)]
            bold = "**" if runner in ("dltrain", "dltrain_cold") else ""
            lines.append(
                f"| {workload} | {bold}{LABELS[runner]}{bold} | {_median(speeds)} | "
                f"{bold}{statistics.median(ratios):.2f}{bold} ({min(ratios):.2f} - {max(ratios):.2f}) | "
                f"{statistics.median(t['setup_s'] for t in trials):.2f} | {statistics.median(t['wall_s'] for t in trials):.1f} | "
                f"{statistics.median(t['peak_mb'] for t in trials):,.0f} |"
            )
    return lines


def scaling(folder: Path) -> list[str]:
    """W1 at 10k, 100k, 1M rows and W3 at 5k, 20k, 80k images: dltrain's time and memory against size."""
    lines = ["| workload | size | set-up s | training samples/s | process wall s | peak MB |", "| --- | --- | --- | --- | --- | --- |"]
    for kind, sizes in (("W1", (10_000, 100_000, 1_000_000)), ("W3", (5_000, 20_000, 80_000))):
        for size in sizes:
            sub = folder / f"scale-{kind}-{size}"
            sub.mkdir()
            if kind == "W1":
                make_table(size).to_parquet(sub / "table.parquet")
                (sub / "table_rows.json").write_text(json.dumps({"train": int(size * 0.9)}))
            else:
                make_images(sub / "images", size)
                (sub / "images_rows.json").write_text(json.dumps({"train": int(size * 0.9)}))
            result = trial("dltrain", kind, sub, {"DLTRAIN_CACHE": str(sub / "cache")})
            lines.append(f"| {kind} | {size:,} | {result['setup_s']:.2f} | {result['samples_per_s']:,.0f} | {result['wall_s']:.1f} | {result['peak_mb']:,.0f} |")
            print("  " + lines[-1], flush=True)
    return lines


def startup(folder: Path) -> list[str]:
    def timed(command: list[str], repeats: int = 9) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    dltrain = [sys.executable, "-m", "dltrain"]
    torch_import = timed([sys.executable, "-c", "import torch"])
    first_steps = []
    for n in range(5):
        start = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.runners", "first_step", "-", str(ROOT / "configs" / "iris.yaml")],
            check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "BENCH_OUT": str(folder / f"first-{n}")},
        )  # fmt: skip
        first_steps.append(json.loads(done.stdout.strip().splitlines()[-1])["first_step_at"] - start)
    return [
        "| from the shell to | seconds (median of 9; the first step: of 5) |",
        "| --- | --- |",
        f"| `python -c \"import torch\"` done | {torch_import:.2f} |",
        f"| `dltrain --help` done (torch not imported) | {timed([*dltrain, '--help']):.2f} |",
        f"| `dltrain check --help` done | {timed([*dltrain, 'check', '--help']):.2f} |",
        f"| the first training step of `dltrain fit configs/iris.yaml` | {statistics.median(first_steps):.2f} |",
    ]


def header() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = [f"torch {torch.__version__}"]
    for package in ("pytorch-lightning", "keras"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    return [
        f"Measured {datetime.date.today().isoformat()} on {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{', '.join(versions)}, {torch.get_num_threads()} intra-op threads for every trainer; no GPU."
        if not torch.cuda.is_available()
        else f"Measured {datetime.date.today().isoformat()} on {torch.cuda.get_device_name()}, {', '.join(versions)}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=["W1", "W2", "W3", "D"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="do not write the results into README.md")
    args = parser.parse_args()
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("preparing the data ...", flush=True)
        prepare(folder, args.images, args.rows)
        results = measure(args.only, args.repeats, folder)
        lines = [*header(), *table(results)]
        (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")  # kept if a later part fails
        if not args.no_scaling:
            print("scaling ...", flush=True)
            lines += ["", "Scaling (dltrain, one run each):", "", *scaling(folder)]
        if not args.no_startup:
            print("start-up ...", flush=True)
            lines += ["", "Start-up:", "", *startup(folder)]
    lines += ["", f"The whole suite took {(time.perf_counter() - begun) / 60:.1f} minutes."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "benchmarks" / "RESULTS.md").write_text(text)
    if not args.no_readme:
        from benchmarks.common import into_readme

        into_readme(ROOT / "README.md", "bench", text)


if __name__ == "__main__":
    main()

"""`dltrain serve` under load: 1, 8 and 32 concurrent clients sending single rows (or single image
files), for a while each; requests per second, p50 and p99 latency, with batching and without,
against a minimal hand-written FastAPI endpoint around the same model (the floor: JSON to a tensor,
the model, softmax; no encoders, no checks).

    python -m benchmarks.serve [--seconds 20] [--rounds 4] [--clients 1 8 32] [--only table images] [--dry]

The clients run in this process on the same 2 cores as the server, as a user's load test on one
machine would: keep-alive connections sending prepared requests (like wrk), cheap enough that the
servers are measured rather than the client. The three servers of a row run side by side, idle
but one, and take turns (`--rounds`), so that a slower spell of the machine falls on all three.
Writes benchmarks/RESULTS-serve.md and the README's table (not with --dry).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

FLOOR = '''
import io, sys, torch
from fastapi import FastAPI, Request, UploadFile
from PIL import Image
from dltrain.checkpoint import load_run
loaded = load_run(sys.argv[1]); model = loaded.model.eval(); columns = loaded.schema.input_columns
app = FastAPI()
@app.post("/predict")
async def predict(request: Request):
    if request.headers.get("content-type", "").startswith("multipart"):
        form = await request.form()
        data = await form["files"].read()
        x = torch.from_numpy(__import__("numpy").asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype="float32")).permute(2, 0, 1)[None] / 255
    else:
        row = await request.json()
        x = torch.tensor([[float(row[c]) for c in columns]])
    with torch.no_grad():
        p = model(x).softmax(1)[0].tolist()
    return {"prediction": int(max(range(len(p)), key=p.__getitem__)), "probabilities": p}
if __name__ == "__main__":
    import uvicorn; uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], port: int, cwd: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            httpx.post(f"http://127.0.0.1:{port}/predict", content=b"{}", headers={"content-type": "application/json"}, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command}: no answer")


def _request_bytes(port: int, request: dict) -> bytes:
    """One whole HTTP/1.1 request (keep-alive), built once by httpx and sent as bytes."""
    import httpx

    built = httpx.Request("POST", f"http://127.0.0.1:{port}/predict", **request)
    body = built.read()
    head = ["POST /predict HTTP/1.1", f"host: 127.0.0.1:{port}", f"content-length: {len(body)}", f"content-type: {built.headers['content-type']}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _load(port: int, clients: int, seconds: float, requests: list[bytes]) -> dict:
    """`clients` keep-alive connections, each sending its next request as soon as the last is
    answered. The requests are prepared bytes and the answers are read by their Content-Length:
    a client costs tens of microseconds a request, so the server, not the client, is measured
    (an httpx client costs about a millisecond a request, as much as the server under test)."""
    latencies: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds

    async def client(n):
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        try:
            while time.perf_counter() < end:
                start = time.perf_counter()
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                failures += not head.startswith(b"HTTP/1.1 200")
                i += clients
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return {"latencies": latencies, "seconds": time.perf_counter() - began, "failures": failures}


def _figures(rounds: list[dict]) -> dict:
    """Requests per second, p50 and p99 latency in ms over the rounds of one server."""
    ordered = sorted(t for r in rounds for t in r["latencies"])
    return {
        "rps": len(ordered) / sum(r["seconds"] for r in rounds),
        "p50": 1000 * statistics.median(ordered),
        "p99": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "failures": sum(r["failures"] for r in rounds),
    }


def _batches(port: int) -> tuple[int, int] | None:
    """dltrain serve's count of batches and of the requests in them (None for the floor)."""
    import httpx

    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        return health["batches"], health["requests_batched"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _workloads(work: Path) -> dict:
    """W1's MLP (32 inputs, 128, 128, 4 classes: benchmarks/RESULTS.md) on a generated table, and
    the small CNN on generated shapes."""
    rng = np.random.default_rng(0)
    n, features = 20_000, 32
    x = rng.normal(size=(n, features)).astype("float32")
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
    table["y"] = np.array(["a", "b", "c", "d"])[np.digitize(x[:, :4].sum(1), [-1.35, 0, 1.35])]  # four classes, as W1
    table.to_csv(work / "table.csv", index=False)
    (work / "table.yaml").write_text(
        "data: {source: table.csv, target: y, batch_size: 256}\nmodel: {layers: [{Linear: 128}, ReLU, {Linear: 128}, ReLU, {Linear: auto}]}\n"
        "loss: CrossEntropyLoss\ntrain: {epochs: 1}\n"
    )
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_shapes.py"), "--out", str(work / "shapes"), "--per-class", "100"], check=True, capture_output=True)
    shapes = (ROOT / "configs" / "shapes.yaml").read_text().replace("../data/generated/shapes", "shapes")
    (work / "shapes.yaml").write_text(shapes)
    for name in ("table", "shapes"):
        subprocess.run([sys.executable, "-m", "dltrain", "fit", f"{name}.yaml", "train.epochs=1", "--out", f"runs/{name}"], cwd=work, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    rows = table.drop(columns="y").head(1000).to_dict(orient="records")
    images = [p.read_bytes() for p in sorted((work / "shapes").rglob("*.png"))[:200]]
    return {
        "table": (work / "runs/table", lambda i: {"json": rows[i % len(rows)]}),
        "images": (work / "runs/shapes", lambda i: {"files": [("files", ("x.png", images[i % len(images)], "image/png"))]}),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--only", nargs="+", default=["table", "images"])
    parser.add_argument("--rounds", type=int, default=4, help="each server's seconds are measured in so many turns")
    parser.add_argument("--dry", action="store_true", help="print the table; write neither RESULTS-serve.md nor the README")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dltrain-serve-bench-"))
    lines = ["| model | clients | server | requests/s | p50 ms | p99 ms | requests per batch | vs the floor |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    try:
        workloads = _workloads(work)
        (work / "floor.py").write_text(FLOOR)
        for name in args.only:
            run, request = workloads[name]
            servers = {
                "floor (hand-written FastAPI)": lambda port, run=run: [sys.executable, str(work / "floor.py"), str(run), str(port)],
                "dltrain serve, batched": lambda port, run=run: [sys.executable, "-m", "dltrain", "serve", str(run), "--port", str(port)],
                "dltrain serve, one by one": lambda port, run=run: [sys.executable, "-m", "dltrain", "serve", str(run), "--port", str(port), "--batch-wait-ms", "0", "--max-batch", "1"],
            }
            for clients in args.clients:
                started = {}
                try:
                    for label, command in servers.items():
                        port = _port()
                        started[label] = (port, _start(command(port), port, work))
                    prepared = {label: [_request_bytes(port, request(i)) for i in range(200)] for label, (port, _) in started.items()}
                    rounds = {label: [] for label in started}
                    batches = {label: [] for label in started}
                    for label, (port, _) in started.items():
                        asyncio.run(_load(port, clients, 1.0, prepared[label]))  # warm
                    for _ in range(args.rounds):  # in turns, so that the machine's drift falls on every server alike
                        for label, (port, _) in started.items():
                            before = _batches(port)
                            rounds[label].append(asyncio.run(_load(port, clients, args.seconds / args.rounds, prepared[label])))
                            after = _batches(port)
                            if before and after:
                                batches[label].append((after[0] - before[0], after[1] - before[1]))
                finally:
                    for _, process in started.values():
                        process.terminate()
                        process.wait()
                floor = None
                for label in started:
                    found = _figures(rounds[label])
                    floor = floor or found["rps"]
                    ran = sum(b for b, _ in batches[label])
                    per_batch = f"{sum(r for _, r in batches[label]) / ran:.1f}" if ran else "-"
                    line = f"| {name} | {clients} | {label} | {found['rps']:,.0f} | {found['p50']:.1f} | {found['p99']:.1f} | {per_batch} | {found['rps'] / floor:.2f} |"
                    print(line + (f" ({found['failures']} failed)" if found["failures"] else ""), flush=True)
                    lines.append(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    head = f"Measured {time.strftime('%Y-%m-%d')}, 2 cores, clients and servers on the same machine, {args.seconds:g} s per row in {args.rounds} turns (python -m benchmarks.serve)"
    print(text)
    if args.dry:
        return
    (ROOT / "benchmarks" / "RESULTS-serve.md").write_text(f"{head}\n\n{text}")
    from benchmarks.common import into_readme

    into_readme(ROOT / "README.md", "serve", f"{head}.\n\n{text}")


if __name__ == "__main__":
    main(sys.argv[1:])

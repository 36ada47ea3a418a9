"""`dltrain serve`: a run behind an HTTP API (FastAPI and uvicorn, the `serve` extra).

The checkpoint is loaded once, before the server listens (a bad one is an exit 2). Requests are
encoded and decoded by the functions `dltrain predict` uses (`schema.encode_inputs`,
`inference.run_model`, `inference.decode_outputs`), one request at a time on one thread; the model
runs on the rows of every request that arrived within `wait_ms` of the first, together (at most
`max_batch` rows), so throughput grows with the clients.
"""


import asyncio
import json
import math
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from dltrain.errors import DataError, DltrainError, UsageError, first_line

MAX_BODY = 10 * 1024 * 1024


@dataclass
class Settings:
    max_body: int = MAX_BODY  # bytes of one request
    wait_ms: float = 2.0  # how long the first request of a batch waits for others
    max_batch: int = 256  # rows through the model at once
    queue: int = 1024  # requests waiting at most; more answer 503
    allow_paths: Path | None = None  # JSON rows may name files under this folder (never by default)
    batching: bool = True


def _fastapi():
    try:
        import fastapi
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError("dltrain serve runs on FastAPI and uvicorn, an optional extra: pip install 'dltrain[serve]'") from None
    return fastapi


class _Batcher:
    """Encoded requests in, outputs back: the model runs once for all that arrive together."""

    def __init__(self, loaded, settings: Settings, model_thread: ThreadPoolExecutor):
        self.loaded, self.settings, self.thread = loaded, settings, model_thread
        self.queue: asyncio.Queue | None = None
        self.task = None

    def start(self) -> None:
        self.queue = asyncio.Queue(self.settings.queue)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def outputs(self, x: torch.Tensor) -> torch.Tensor:
        from dltrain.inference import run_model

        loop = asyncio.get_running_loop()
        if not self.settings.batching:
            return await loop.run_in_executor(self.thread, run_model, self.loaded, x)
        future = loop.create_future()
        try:
            self.queue.put_nowait((x, future))
        except asyncio.QueueFull:
            raise _Busy() from None
        return await future

    async def _run(self) -> None:
        from dltrain.inference import run_model

        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            waiting, rows = [first], len(first[0])
            while rows < self.settings.max_batch and not self.queue.empty():  # what came while the model ran
                item = self.queue.get_nowait()
                waiting.append(item)
                rows += len(item[0])
            # a request alone goes at once; when others came with it, more are likely: wait for them a little
            deadline = loop.time() + (self.settings.wait_ms / 1000 if len(waiting) > 1 else 0)
            while rows < self.settings.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                waiting.append(item)
                rows += len(item[0])
            try:
                x = torch.cat([item[0] for item in waiting]) if len(waiting) > 1 else waiting[0][0]
                out = await loop.run_in_executor(self.thread, run_model, self.loaded, x)
                start = 0
                for item, future in waiting:
                    if not future.done():
                        future.set_result(out[start : start + len(item)])
                    start += len(item)
            except Exception as error:  # a failure answers every request of the batch
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)


class _Busy(Exception):
    pass


def _request_schema(loaded) -> dict:
    """The JSON Schema of a row, from the run's encoders: each column, its type and known values."""
    properties = {}
    for encoder in loaded.schema.inputs:
        kind = encoder.type
        if kind == "numeric":
            entry = {"type": ["number", "null"], "description": "a number (missing: the training mean)"}
        elif kind in ("binary", "category"):
            classes = list(getattr(encoder, "classes", []))
            entry = {"type": ["string", "number", "boolean", "null"], "description": f"one of {', '.join(map(str, classes))} (others are read as unknown)", "examples": classes[:5]}
        elif kind in ("image", "audio", "video"):
            entry = {"type": "string", "description": f"a path to a {kind} file under the server's --allow-paths folder; or upload files as multipart"}
        else:
            entry = {"type": ["string", "null"], "description": kind}
        properties[encoder.column] = entry
    row = {"type": "object", "properties": properties, "required": list(properties)}
    return {"anyOf": [row, {"type": "array", "items": row}]}


def metadata(loaded) -> dict:
    schema = loaded.schema
    test = loaded.run_dir / "evaluate_test.json"
    inputs = []
    for encoder in schema.inputs:
        item = {"column": encoder.column, "type": encoder.type}
        if getattr(encoder, "classes", None):
            item["values"] = list(encoder.classes)
        inputs.append(item)
    return {
        "run": str(loaded.run_dir),
        "inputs": inputs,
        "target": {"column": schema.target.column, "type": schema.target.type},
        "classes": list(loaded.task.classes),
        "test_metrics": json.loads(test.read_text()).get("metrics") if test.is_file() else None,
    }


def make_app(run: str | Path, settings: Settings | None = None):
    """The FastAPI application of a run (loaded now: a bad checkpoint raises before anything listens)."""
    fastapi = _fastapi()
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from dltrain.checkpoint import load_run
    from dltrain.console import collecting
    from dltrain.inference import decode_outputs

    settings = settings or Settings()
    loaded = load_run(run)
    loaded.model.eval()
    encode_thread = ThreadPoolExecutor(1, thread_name_prefix="dltrain-encode")  # console.collecting is one thread's
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="dltrain-model")
    batcher = _Batcher(loaded, settings, model_thread)
    files = loaded.schema.files
    lock = threading.Lock()

    async def lifespan(app):
        batcher.start()
        yield
        batcher.task.cancel()

    app = fastapi.FastAPI(title=f"dltrain: {loaded.run_dir.name}", description="Predictions of a dltrain run: POST rows to /predict.", lifespan=lifespan)

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(Exception)
    async def _any(request, error):  # never a traceback to the client
        return problem(500, f"the server could not answer: {type(error).__name__}: {first_line(error)}")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "run": loaded.run_dir.name}

    @app.get("/metadata")
    async def _metadata() -> dict:
        return metadata(loaded)

    def encode(table: pd.DataFrame, label: str):
        with lock, collecting() as said:
            x, readable = loaded.schema.encode_inputs(table, label, new=True)
        return x, readable, list(dict.fromkeys(said))

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _request_schema(loaded)}, "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body:
            return problem(413, f"the request has {int(declared):,} bytes; this server takes at most {settings.max_body:,} (--max-body)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body:
                return problem(413, f"the request is over {settings.max_body:,} bytes, the most this server takes (--max-body)")
        kind = request.headers.get("content-type", "")
        folder = None
        try:
            if kind.startswith("multipart/form-data"):
                if files is None:
                    return problem(422, f"this model takes table rows as JSON (columns {', '.join(loaded.schema.input_columns)}), not files")
                folder = tempfile.TemporaryDirectory(prefix="dltrain-serve-")
                table = await _uploads(request, bytes(body), kind, Path(folder.name), files.column)
                if table is None:
                    return problem(422, "a multipart request needs one or more files (the form field 'files')")
                label = "the uploaded files"
            else:
                try:
                    value = json.loads(bytes(body) or b"null")
                except ValueError as error:
                    return problem(422, f"the body is not JSON: {error}")
                rows = [value] if isinstance(value, dict) else value
                if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
                    return problem(422, f"send a row as a JSON object with the columns {', '.join(loaded.schema.input_columns)}, or a list of them")
                table = pd.DataFrame(rows)
                if files is not None:
                    refused = _paths_refused(table, files.column, settings.allow_paths)
                    if refused:
                        return problem(422, refused)
                label = "the request"
            loop = asyncio.get_running_loop()
            x, readable, warnings = await loop.run_in_executor(encode_thread, encode, table, label)
            if not readable.any():
                return problem(422, "no row of the request could be read: " + "; ".join(warnings or ["unreadable files"]))
            outputs = await batcher.outputs(x)
            result = decode_outputs(loaded, table[readable].reset_index(drop=True), outputs)
            if folder is not None and files is not None:
                result[files.column] = table[files.column].map(lambda p: Path(p).name)[readable].to_numpy()
            answer = {"predictions": _records(result), "warnings": warnings}
            if not readable.all():
                answer["skipped"] = [int(i) for i in (~readable).nonzero()[0]]
            return answer
        except _Busy:
            return problem(503, f"the server has {settings.queue} requests waiting; try again")
        except DataError as error:
            return problem(422, str(error))
        except DltrainError as error:
            return problem(422, str(error))
        finally:
            if folder is not None:
                folder.cleanup()

    return app


async def _uploads(request, body: bytes, kind: str, folder: Path, column: str) -> pd.DataFrame | None:
    """The files of a multipart body, saved under `folder` with their own names."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartParser

    async def stream():
        yield body

    form = await MultiPartParser(request.headers, stream()).parse()
    paths = []
    for n, (_, value) in enumerate(form.multi_items()):
        if isinstance(value, UploadFile):
            name = Path(value.filename or f"file{n}").name
            target = folder / f"{n:05d}-{name}"
            target.write_bytes(await value.read())
            paths.append(str(target))
    return pd.DataFrame({column: paths}) if paths else None


def _paths_refused(table: pd.DataFrame, column: str, allowed: Path | None) -> str | None:
    if column not in table.columns:
        return None  # encode_inputs names the missing column
    if allowed is None:
        return f"this server takes {column} files as multipart uploads; paths are read only when it was started with --allow-paths DIR"
    root = allowed.resolve()
    for value in table[column]:
        path = Path(str(value)).resolve()
        if root != path and root not in path.parents:
            return f"{column}: {value} is not under {root}, the folder this server may read (--allow-paths)"
    return None


def _records(result: pd.DataFrame) -> list[dict]:
    records = result.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
            elif hasattr(value, "item"):
                record[key] = value.item()
    return records


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, settings: Settings | None = None) -> None:
    """Load the run, then listen until stopped (Ctrl-C)."""
    app = make_app(run, settings)  # before listening: a bad checkpoint is an exit 2 here
    import uvicorn

    if workers != 1:
        raise UsageError("--workers: one process per server for now; start several servers on other ports behind a proxy")
    from dltrain.console import note

    note(f"serving {Path(run)} on http://{host}:{port} (POST /predict, GET /metadata, GET /health, /docs); Ctrl-C stops")
    started = time.monotonic()
    uvicorn.run(app, host=host, port=port, log_level="warning")
    note(f"stopped after {time.monotonic() - started:.0f} s")

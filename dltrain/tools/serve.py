"""`dltrain serve`: a run behind an HTTP API (FastAPI and uvicorn, the `serve` extra).

The checkpoint is loaded once, before the server listens (a bad one is an exit 2). Requests are
encoded and decoded by the functions `dltrain predict` uses (`schema.encode_inputs`, or for rows of
numbers `schema.encode_numbers`, the same block encoding without building a table; uploaded files
through the file column's own decoder, from memory; `inference.run_model`;
`inference.output_columns` and `echoed_columns`). Requests that are ready together share the model
(`_Batcher`: those of one turn of the event loop, and those that came while it ran, at most
`max_batch` rows), so throughput grows with the clients. Work measured under a millisecond runs on
the event loop; longer work (large batches, large files) on its own thread, while the loop takes
further requests. POST /predict goes around FastAPI's layers (`_Front`); the rest goes through it.
"""


import asyncio
import functools
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dltrain.errors import DataError, DltrainError, UsageError, first_line

MAX_BODY = 10 * 1024 * 1024
INLINE_S = 0.001  # a model call measured quicker than this runs on the event loop, not on the model thread


@dataclass
class Settings:
    max_body: int = MAX_BODY  # bytes of one request
    wait_ms: float = 0.0  # how long a batch that is not full may wait for more requests (0: it takes those ready)
    max_batch: int = 256  # rows through the model at once
    queue: int = 1024  # requests waiting at most; more answer 503
    allow_paths: Path | None = None  # JSON rows may name files under this folder (never by default)
    batching: bool = True
    threads: int | None = None  # torch's threads per server process (None: the cores, shared out between workers, where they make the model quicker)


def _fastapi():
    try:
        import fastapi
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError("dltrain serve runs on FastAPI and uvicorn, an optional extra: pip install 'dltrain[serve]'") from None
    return fastapi


class _Placed:
    """Encoding that runs where it costs least: on the event loop when it was measured quicker than
    INLINE_S for as much input (a hop to a thread and back costs a few tenths of a millisecond),
    else on its own thread, so that the loop goes on taking requests while it runs. The first call
    of each size goes to the thread and is timed."""

    def __init__(self, thread: ThreadPoolExecutor):
        self.thread = thread
        self.inline = 0  # work on at most so much input was measured under INLINE_S

    async def __call__(self, size: int, work, *args):
        if size <= self.inline:
            out, took = _timed(work, *args)
        else:
            out, took = await asyncio.get_running_loop().run_in_executor(self.thread, _timed, work, *args)
        self.inline = max(self.inline, size) if took < INLINE_S else min(self.inline, size - 1)
        return out


def _threads_for(loaded) -> int:
    """torch's threads for this model's requests: all the cores' only where they make a row's pass
    through the model at least a tenth quicker than one thread does (a small MLP's is not, and
    threads waiting between calls spin on the cores that the clients and the parsing need), timed
    at the start on a row of zeros."""
    most = torch.get_num_threads()
    if most <= 1 or loaded.device.type != "cpu":
        return most
    from dltrain.inference import run_model

    spec = loaded.schema.input_spec()
    x = torch.zeros((1, *spec.shape), dtype=torch.long if spec.dtype == "long" else torch.float32)
    took = {}
    try:
        for threads in (most, 1):
            torch.set_num_threads(threads)
            first = _timed(run_model, loaded, x)[1]
            if first > 0.05:  # a large model: its threads are worth their cost
                return most
            took[threads] = min(_timed(run_model, loaded, x)[1] for _ in range(10))
    except Exception:  # a model that takes no row of zeros: torch's default
        return most
    finally:
        torch.set_num_threads(most)
    return most if took[most] < 0.9 * took[1] else 1


def _timed(work, *args):
    began = time.perf_counter()
    out = work(*args)
    return out, time.perf_counter() - began


class _Batcher:
    """Encoded requests in, the rows of their answers out. The model runs once for all the requests
    ready together, at most `max_batch` rows: a request that finds the model free leads a batch,
    lets the event loop take one turn (the requests of clients that sent together are read
    together, and join it), runs the model and answers them all; those that came while the model ran
    are the next batch. No request waits longer unless `wait_ms` says so: when every client waits
    for an answer, none comes while the model idles. The outputs are decoded once for the batch."""

    def __init__(self, loaded, settings: Settings, model_thread: ThreadPoolExecutor):
        self.loaded, self.settings = loaded, settings
        # on the CPU the model runs on the event loop's thread: torch's threads are all the cores'
        # work already, and torch called from two threads runs each call several times slower
        # (two pools of threads); on a GPU it runs on its own thread, and the loop goes on meanwhile
        self.thread = model_thread if loaded.device.type != "cpu" else None
        self.pending: list[tuple[torch.Tensor, asyncio.Future]] = []
        self.leading = False  # a batch is being gathered or run
        self.arrived: asyncio.Event | None = None
        self.next = None  # the task leading the next batch
        self.sizes = [0, 0]  # batches run, requests in them

    async def rows(self, x: torch.Tensor) -> list[dict]:
        """The answer's rows (prediction, probabilities) for a request's encoded rows."""
        if not self.settings.batching:
            return await self._placed(x)
        if len(self.pending) >= self.settings.queue:
            raise _Busy()
        future = asyncio.get_running_loop().create_future()
        self.pending.append((x, future))
        if self.arrived is not None:
            self.arrived.set()
        if not self.leading:
            self.leading = True
            await self._lead()
        return await future

    async def _lead(self) -> None:
        try:
            await asyncio.sleep(0)  # one turn of the loop: the requests ready with this one join it
            if self.settings.wait_ms > 0:
                await self._fill(self.settings.wait_ms / 1000)
            batch, rows = [], 0
            while self.pending and (not batch or rows + len(self.pending[0][0]) <= self.settings.max_batch):
                batch.append(self.pending.pop(0))
                rows += len(batch[-1][0])
            self.sizes[0] += 1
            self.sizes[1] += len(batch)
            try:
                x = torch.cat([item[0] for item in batch]) if len(batch) > 1 else batch[0][0]
                answered = await self._placed(x)
                start = 0
                for item, future in batch:
                    if not future.done():
                        future.set_result(answered[start : start + len(item)])
                    start += len(item)
            except BaseException as error:  # a failure answers every request of the batch (a stop too: none waits forever)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RuntimeError("the server is stopping"))
                if not isinstance(error, Exception):
                    raise
        finally:
            self.leading = bool(self.pending)
            if self.leading:  # those that came meanwhile: the next batch, led by a task of its own
                self.next = asyncio.get_running_loop().create_task(self._lead())

    async def _fill(self, wait: float) -> None:
        """Wait up to `wait` seconds for the batch to fill."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self.arrived = self.arrived or asyncio.Event()
        while sum(len(item[0]) for item in self.pending) < self.settings.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    async def _placed(self, x: torch.Tensor) -> list[dict]:
        if self.thread is None:
            return self._answer(x)
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._answer, x)

    def _answer(self, x: torch.Tensor) -> list[dict]:
        from dltrain.inference import output_columns, run_model

        return _records(output_columns(self.loaded, run_model(self.loaded, x)))


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
        elif kind == "date":
            entry = {"type": ["string", "null"], "description": "a date, such as 2021-03-04 or 2021-03-04 10:30 (missing: the training mean)"}
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
    from fastapi.responses import JSONResponse, Response

    from dltrain.checkpoint import load_run
    from dltrain.console import collecting, without_notes
    from dltrain.inference import echoed_columns

    settings = settings or Settings()
    loaded = load_run(run)
    loaded.model.eval()
    torch.set_num_threads(settings.threads or _threads_for(loaded))
    encoding = _Placed(ThreadPoolExecutor(1, thread_name_prefix="dltrain-encode"))  # one at a time: console.collecting is global
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="dltrain-model")
    batcher = _Batcher(loaded, settings, model_thread)
    files = loaded.schema.files
    lock = threading.Lock()

    app = fastapi.FastAPI(title=f"dltrain: {loaded.run_dir.name}", description="Predictions of a dltrain run: POST rows to /predict.")

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(Exception)
    async def _any(request, error):  # never a traceback to the client
        return problem(500, f"the server could not answer: {type(error).__name__}: {first_line(error)}")

    @app.get("/health")
    async def health() -> dict:
        batches, batched = batcher.sizes
        return {"status": "ok", "run": loaded.run_dir.name, "batches": batches, "requests_batched": batched, "torch_threads": torch.get_num_threads()}

    @app.get("/metadata")
    async def _metadata() -> dict:
        return metadata(loaded)

    def encode(table: pd.DataFrame, label: str):
        with lock, collecting() as said, without_notes():  # a request's notes ("1 decoded") would flood the log
            x, readable = loaded.schema.encode_inputs(table, label, new=True)
        return x, readable, list(dict.fromkeys(said))

    def encode_numbers(names: list[str], values: np.ndarray, label: str):
        with lock, collecting() as said:
            x = loaded.schema.encode_numbers(names, values, label)
        return x, list(dict.fromkeys(said))

    def encode_sent(sent: list[tuple[str, bytes]]):
        with lock, collecting() as said:
            x, readable = files.encode_sent(sent, loaded.schema.on_error)
        return x, readable, list(dict.fromkeys(said))

    def answer(content: dict) -> Response:
        return Response(json.dumps(content, allow_nan=False), media_type="application/json")

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _request_schema(loaded)}, "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body:
            return problem(413, f"the request has {int(declared):,} bytes; this server takes at most {settings.max_body:,} (--max-body)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body:
                return problem(413, f"the request is over {settings.max_body:,} bytes, the most this server takes (--max-body)")
        kind = request.headers.get("content-type", "")
        try:
            table, echoed = None, None
            if kind.startswith("multipart/form-data"):
                if files is None:
                    return problem(422, f"this model takes table rows as JSON (columns {', '.join(loaded.schema.input_columns)}), not files")
                sent = await _uploads(request, body)
                if not sent:
                    return problem(422, "a multipart request needs one or more files (the form field 'files')")
                # decoded from memory (measured by their bytes: a large photo decodes slowly); answered with the names they were sent with
                x, readable, warnings = await encoding(len(body), encode_sent, sent)
                echoed = {files.column: np.array([name for name, _ in sent], dtype=object)[readable]}
            else:
                try:
                    value = json.loads(body or b"null")
                except ValueError as error:
                    return problem(422, f"the body is not JSON: {error}")
                rows = [value] if isinstance(value, dict) else value
                if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
                    return problem(422, f"send a row as a JSON object with the columns {', '.join(loaded.schema.input_columns)}, or a list of them")
                label = "the request"
                numbers = _number_rows(rows, loaded.schema.id) if files is None else None
                x = None
                if numbers is not None:  # rows of numbers for a model of numbers: no table is built
                    x, warnings = await encoding(len(rows), encode_numbers, *numbers, label)
                    readable = np.ones(len(rows), dtype=bool)
                if x is None:
                    table = pd.DataFrame(numbers[1], columns=_index(tuple(numbers[0]))) if numbers is not None else pd.DataFrame(rows)
                    if files is not None:
                        refused = _paths_refused(table, files.column, settings.allow_paths)
                        if refused:
                            return problem(422, refused)
                    x, readable, warnings = await encoding(len(table), encode, table, label)
                    echoed = echoed_columns(loaded, table[readable] if not readable.all() else table) or None
            if not readable.any():
                return problem(422, "no row of the request could be read: " + "; ".join(warnings or ["unreadable files"]))
            predictions = await batcher.rows(x)
            if echoed:  # the id column or the files first, as predict writes them
                predictions = [{**named, **row} for named, row in zip(_records(echoed), predictions)]
            content = {"predictions": predictions, "warnings": warnings}
            if not readable.all():
                content["skipped"] = [int(i) for i in (~readable).nonzero()[0]]
            return answer(content)
        except _Busy:
            return problem(503, f"the server has {settings.queue} requests waiting; try again")
        except DltrainError as error:  # DataError included: the request's data, named
            return problem(422, str(error))

    async def straight(scope, receive, send):
        try:
            response = await predict(Request(scope, receive))
        except Exception as error:  # never a traceback to the client
            response = problem(500, f"the server could not answer: {type(error).__name__}: {first_line(error)}")
        await response(scope, receive, send)

    return _Front(app, straight)


class _Front:
    """The server as uvicorn sees it: POST /predict goes straight to its handler, which answers
    every error itself, and the rest (/docs, /metadata, /health, the start and the stop) through
    FastAPI. FastAPI's layers (routing, middleware, dependencies) cost a request as much as the
    model of a table does; the route stays declared there for the OpenAPI page."""

    def __init__(self, app, predict):
        self.app, self.predict = app, predict

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/predict":
            await self.predict(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _uploads(request, body: bytes) -> list[tuple[str, bytes]]:
    """The files of a multipart body: the names they were sent with, and their contents."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream()).parse()
    except MultiPartException as error:
        raise DataError(f"the multipart body cannot be read ({error}); send the files as form field 'files'") from None
    try:
        return [(Path(value.filename or f"file{n}").name, await value.read()) for n, (_, value) in enumerate(form.multi_items()) if isinstance(value, UploadFile)]
    finally:
        await form.close()  # the parser's spooled files


_EXACT = 2**53  # integers beyond are not exact as floats


@functools.lru_cache(64)
def _index(columns: tuple[str, ...]) -> pd.Index:
    return pd.Index(columns, dtype=object)  # clients send the same columns again and again: built once


def _number_rows(rows: list[dict], id_column: str | None) -> tuple[list[str], np.ndarray] | None:
    """JSON rows of numbers alone (the common case of a served table model): their columns and one
    float64 array of them (null and absent: NaN, missing), read as pandas reads the same rows.
    None for anything else (text, booleans, the id column, which is echoed as sent)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if id_column in columns:
        return None
    matrix = [[row.get(c) for c in columns] for row in rows]
    if all(v is None or type(v) is float or (type(v) is int and -_EXACT < v < _EXACT) for line in matrix for v in line):
        return columns, np.array(matrix, dtype="float64")
    return None


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


def _records(columns: dict[str, np.ndarray]) -> list[dict]:
    """Rows of JSON values from decoded columns: numbers as floats (NaN and infinities as null)."""
    lists = []
    for values in columns.values():
        values = np.asarray(values)
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            values = values.tolist() if finite.all() else [v if ok else None for v, ok in zip(values.tolist(), finite)]
        else:
            values = [v.item() if hasattr(v, "item") else v for v in values.tolist()]
        lists.append(values)
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*lists)]


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, settings: Settings | None = None) -> None:
    """Load the run, then listen until stopped (Ctrl-C). With `workers` > 1, so many processes each
    load the run and take requests from the same port (uvicorn's workers)."""
    settings = settings or Settings()
    if workers > 1 and settings.threads is None:  # the cores shared out between the processes
        settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    app = make_app(run, settings)  # before listening: a bad checkpoint is an exit 2 here
    import uvicorn

    from dltrain.console import note

    note(f"serving {Path(run)} on http://{host}:{port} (POST /predict, GET /metadata, GET /health, /docs){f' in {workers} processes' if workers > 1 else ''}, {torch.get_num_threads()} torch thread(s){' each' if workers > 1 else ''}; Ctrl-C stops")
    started = time.monotonic()
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:  # each worker builds its own app from the environment (uvicorn starts them by import string)
        del app
        fields = {**asdict(settings), "allow_paths": str(settings.allow_paths) if settings.allow_paths else None}
        os.environ[_WORKER_ENV] = json.dumps({"run": str(Path(run).resolve()), "settings": fields})
        uvicorn.run("dltrain.tools.serve:_worker_app", factory=True, host=host, port=port, workers=workers, log_level="warning")
    note(f"stopped after {time.monotonic() - started:.0f} s")


_WORKER_ENV = "DLTRAIN_SERVE_WORKER"


def _worker_app():
    """The app of one of `serve`'s worker processes."""
    spec = json.loads(os.environ[_WORKER_ENV])
    fields = spec["settings"]
    fields["allow_paths"] = Path(fields["allow_paths"]) if fields["allow_paths"] else None
    return make_app(spec["run"], Settings(**fields))

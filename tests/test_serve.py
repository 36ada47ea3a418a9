"""dltrain serve: the real server on 127.0.0.1 and a free port, real HTTP requests, the answers of
`dltrain predict` for the same rows, files uploaded, and the errors a client can cause."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, *args: str, cwd: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dltrain", "serve", str(run), "--port", str(self.port), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"the server stopped: {self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not answer within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def served(workdir, cli):
    servers = []

    def start(config: str, *args: str, fit: tuple[str, ...] = ()) -> tuple[Server, Path]:
        run = workdir / "runs" / config
        assert cli("fit", f"configs/{config}.yaml", "train.epochs=3", "--out", run, *fit).code == 0
        server = Server(run, *args, cwd=workdir)
        servers.append(server)
        return server, run

    yield start
    for server in servers:
        server.stop()


def _test_rows(run: Path) -> pd.DataFrame:
    info = json.loads((run / "data.json").read_text())
    table = pd.read_csv(info["source"]["path"])
    return table.iloc[info["indices"]["test"]].reset_index(drop=True)


@pytest.mark.parametrize("config", ["iris", "breast_cancer"])
def test_the_served_predictions_are_predicts(served, cli, workdir, config):
    server, run = served(config)
    rows = _test_rows(run)
    rows.drop(columns=[c for c in ("species", "diagnosis") if c in rows]).to_csv(workdir / "rows.csv", index=False)
    assert cli("predict", run, workdir / "rows.csv", "-o", workdir / "p.csv").code == 0
    expected = pd.read_csv(workdir / "p.csv")
    body = json.loads(rows.to_json(orient="records"))
    answer = httpx.post(f"{server.url}/predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    got = pd.DataFrame(answer.json()["predictions"])
    assert list(got["prediction"]) == list(expected["prediction"].astype(str))
    probabilities = [c for c in expected.columns if c.startswith("prob_")]
    assert probabilities and (got[probabilities] - expected[probabilities]).abs().max().max() < 1e-6
    one = httpx.post(f"{server.url}/predict", json=body[0], timeout=30).json()["predictions"]  # one object: one row
    assert len(one) == 1 and one[0]["prediction"] == str(expected["prediction"][0])
    # missing and infinite numbers: read as predict reads them (the training mean, with a warning)
    holes = rows.drop(columns=[c for c in ("species", "diagnosis") if c in rows]).head(4).astype(float)
    first, second = holes.columns[:2]
    holes.loc[0, first], holes.loc[1, second] = float("nan"), float("inf")
    holes.to_csv(workdir / "holes.csv", index=False)
    assert cli("predict", run, workdir / "holes.csv", "-o", workdir / "h.csv").code == 0
    expected = pd.read_csv(workdir / "h.csv")
    sent = [{k: (None if v != v else v) for k, v in row.items()} for row in holes.to_dict(orient="records")]
    answer = httpx.post(f"{server.url}/predict", content=json.dumps(sent), headers={"content-type": "application/json"}, timeout=30).json()
    assert (pd.DataFrame(answer["predictions"])[probabilities] - expected[probabilities]).abs().max().max() < 1e-6
    assert any(f"column '{second}': 1 infinite value" in w for w in answer["warnings"]), answer["warnings"]


def test_errors_answer_with_their_status_and_message(served):
    server, _ = served("iris", "--max-body", "2000", "--workers", "2")  # the settings reach each worker
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    missing = httpx.post(f"{server.url}/predict", json={"sepal_length": 5.1}, timeout=30)
    assert missing.status_code == 422 and "needs column(s) sepal_width, petal_length, petal_width" in missing.json()["detail"]
    text = httpx.post(f"{server.url}/predict", json={**row, "sepal_length": "abc"}, timeout=30)
    assert text.status_code == 200 and "text ('abc') are read as missing values" in text.json()["warnings"][0]  # as predict reads it
    big = httpx.post(f"{server.url}/predict", json=[row] * 100, timeout=30)
    assert big.status_code == 413 and "at most 2,000" in big.json()["detail"]
    broken = httpx.post(f"{server.url}/predict", content=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    assert broken.status_code == 422 and "not JSON" in broken.json()["detail"]
    assert httpx.post(f"{server.url}/predict", json=[1, 2], timeout=30).status_code == 422
    assert "Traceback" not in big.text + missing.text + broken.text
    assert httpx.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"  # still serving


def test_requests_that_come_together_share_the_model_and_get_their_own_answers(served, workdir):
    server, run = served("iris", "--batch-wait-ms", "500")  # a batch waits up to half a second for more
    rows = json.loads(_test_rows(run).drop(columns="species").head(6).to_json(orient="records"))
    alone = [httpx.post(f"{server.url}/predict", json=row, timeout=30).json()["predictions"][0] for row in rows]
    before = httpx.get(f"{server.url}/health", timeout=5).json()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(rows)) as pool:
        together = list(pool.map(lambda row: httpx.post(f"{server.url}/predict", json=row, timeout=30).json()["predictions"][0], rows))
    after = httpx.get(f"{server.url}/health", timeout=5).json()
    assert after["requests_batched"] - before["requests_batched"] == len(rows)
    assert after["batches"] - before["batches"] <= 3  # six requests in one batch or a few, not six
    assert [a["prediction"] for a in alone] == [t["prediction"] for t in together]  # each its own rows
    assert max(abs(a[k] - t[k]) for a, t in zip(alone, together) for k in a if k.startswith("prob_")) < 1e-6


def test_metadata_and_the_request_schema(served, cli):
    server, run = served("penguins")
    assert cli("evaluate", run).code == 0
    meta = httpx.get(f"{server.url}/metadata", timeout=10).json()
    columns = {i["column"]: i for i in meta["inputs"]}
    assert columns["island"]["type"] == "category" and set(columns["island"]["values"]) == {"Biscoe", "Dream", "Torgersen"}
    assert meta["classes"] == ["Adelie", "Chinstrap", "Gentoo"] and meta["target"]["column"] == "species"
    assert meta["test_metrics"] is None or "accuracy" in meta["test_metrics"]
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "island" in schema["anyOf"][0]["properties"] and "bill_length_mm" in schema["anyOf"][0]["required"]
    unknown = httpx.post(f"{server.url}/predict", json={**{c: 1.0 for c in columns}, "island": "Atlantis", "sex": "female"}, timeout=30)
    assert unknown.status_code == 200 and any("Atlantis" in w for w in unknown.json()["warnings"])


def test_images_are_uploaded_as_files_and_paths_need_allow_paths(tmp_path, cli):
    from tests.conftest import write
    from tests.test_images import SMALL, make_shapes

    folder = make_shapes(tmp_path / "shapes", 10)
    run = tmp_path / "run"
    assert cli("fit", write(tmp_path / "c.yaml", SMALL.format(source=folder)), "--out", run).code == 0
    files = sorted((folder / "circle").glob("*.png"))[:3] + sorted((folder / "square").glob("*.png"))[:2]
    server = Server(run, cwd=tmp_path)
    try:
        upload = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
        answer = httpx.post(f"{server.url}/predict", files=upload, timeout=30)
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        assert [g["path"] for g in got] == [f.name for f in files]  # the names they were sent with
        from dltrain.inference import predict

        direct = predict(run, pd.DataFrame({"path": [str(f) for f in files]}))
        assert [g["prediction"] for g in got] == list(direct["prediction"])
        assert max(abs(g[c] - v) for g, (_, r) in zip(got, direct.iterrows()) for c, v in r.items() if c.startswith("prob_")) < 1e-6
        cached = sorted(Path(os.environ["DLTRAIN_CACHE"]).rglob("*.pt"))
        assert cached  # training and predict keep decoded images there
        assert httpx.post(f"{server.url}/predict", files=upload[1:2], timeout=30).status_code == 200
        assert sorted(Path(os.environ["DLTRAIN_CACHE"]).rglob("*.pt")) == cached  # an upload exists once: never kept in the decoded-file cache
        broken = httpx.post(f"{server.url}/predict", content=b"--x\r\nnot a form", headers={"content-type": "multipart/form-data; boundary=y"}, timeout=30)
        assert broken.status_code == 422 and "multipart" in broken.json()["detail"], broken.text
        unreadable = httpx.post(f"{server.url}/predict", files=[upload[0], ("files", ("notes.png", b"not an image", "image/png"))], timeout=30)
        assert unreadable.status_code == 422 and "notes.png" in unreadable.json()["detail"], unreadable.text
        refused = httpx.post(f"{server.url}/predict", json={"path": str(files[0])}, timeout=30)
        assert refused.status_code == 422 and "--allow-paths" in refused.json()["detail"]
    finally:
        server.stop()
    allowed = Server(run, "--allow-paths", str(folder), cwd=tmp_path)
    try:
        answer = httpx.post(f"{allowed.url}/predict", json=[{"path": str(f)} for f in files], timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 5
        outside = httpx.post(f"{allowed.url}/predict", json={"path": str(tmp_path / "c.yaml")}, timeout=30)
        assert outside.status_code == 422 and "is not under" in outside.json()["detail"]
    finally:
        allowed.stop()


def test_a_damaged_checkpoint_exits_2_before_listening(tmp_path, cli):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"not a checkpoint")
    result = cli("serve", tmp_path / "run", "--port", str(_free_port()))
    assert result.code == 2 and "best.pt" in result.output and "Traceback" not in result.output

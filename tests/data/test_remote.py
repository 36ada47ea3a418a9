"""Remote sources through fsspec, against a real S3-compatible server (moto's) and a web server on
loopback: tables and folders of images fetched into the cache by their ETags, evaluate of such a run,
a changed object seen, and the errors of a wrong url."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import logging
import shutil
import sys
import threading

import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT, write

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "dltrain-data"
IRIS = ROOT / "data" / "iris.csv"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback, with the environment variables that point s3fs and boto3 at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(IRIS), BUCKET, "tables/iris.csv")
        buffer = io.BytesIO()
        pd.read_csv(IRIS).to_parquet(buffer)
        client.put_object(Bucket=BUCKET, Key="tables/iris.parquet", Body=buffer.getvalue())
        for index, (label, colour) in enumerate([("red", (220, 30, 30)), ("blue", (30, 30, 220))] * 12):
            image = Image.new("RGB", (12, 12), colour)
            image.putpixel((index % 12, index // 12 % 12), (128, 128, 128))
            png = io.BytesIO()
            image.save(png, format="PNG")
            client.put_object(Bucket=BUCKET, Key=f"images/{label}/{index:03d}.png", Body=png.getvalue())
        yield client
    server.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A plain web server on loopback serving a folder (as an https:// url of a table would)."""
    folder = tmp_path_factory.mktemp("web")
    shutil.copy(IRIS, folder / "iris.csv")
    with open(IRIS, "rb") as plain, gzip.open(folder / "iris.csv.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            if self.path.startswith("/secret/"):
                self.send_error(403)
                return None
            return super().send_head()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def config(source, out, **data) -> dict:
    return {
        "name": "remote",
        "seed": 0,
        "data": {"source": source, "target": "species", "split": {"train": 0.7, "val": 0.15, "test": 0.15}, "batch_size": 16, **data},
        "model": {"layers": [{"Linear": 16}, "ReLU", {"Linear": "auto"}]},
        "loss": "CrossEntropyLoss",
        "optimizer": {"type": "Adam", "lr": 0.02},
        "train": {"epochs": 8, "out_dir": str(out)},
    }


@pytest.fixture
def downloads(monkeypatch):
    """Every object downloaded, by url."""
    import dltrain.data.remote as remote

    seen: list[str] = []
    fetch = remote._fetch

    def counted(fs, url, known):
        seen.append(url)
        return fetch(fs, url, known)

    monkeypatch.setattr(remote, "_fetch", counted)
    return seen


def cached_files(tmp_path) -> list:
    return sorted(p for p in (tmp_path / "cache" / "remote").rglob("*") if p.is_file())


def object_reads(caplog) -> int:
    """The GET requests of the object (not its HEADs, not listings) that moto's server logged."""
    return sum(f'"GET /{BUCKET}/tables/iris.csv ' in record.getMessage() for record in caplog.records)


def test_an_s3_table_trains_evaluates_and_is_read_from_the_cache_until_it_changes(s3, tmp_path, downloads, caplog):
    import dltrain

    caplog.set_level(logging.INFO, logger="werkzeug")
    url = f"s3://{BUCKET}/tables/iris.csv"
    etag = s3.head_object(Bucket=BUCKET, Key="tables/iris.csv")["ETag"].strip('"')
    first = dltrain.fit(config(url, tmp_path / "runs"), progress=False, curves=False)
    assert first.best["val_accuracy"] >= 0.7, first.best
    recorded = json.loads((first.run_dir / "data.json").read_text())["source"]
    assert recorded == {"type": "csv", "path": url, "etag": etag}  # the url, never the cache's copy
    assert "cache" not in (first.run_dir / "data.json").read_text()
    assert yaml_source(first.run_dir) == url
    assert downloads == [url] and object_reads(caplog) == 1  # one download for the whole fit (sample, columns, rows)
    [copy] = cached_files(tmp_path)
    stamp = copy.stat().st_mtime_ns
    assert dltrain.evaluate(first.run_dir).metrics["accuracy"] >= 0.6

    second = dltrain.fit(config(url, tmp_path / "runs"), progress=False, curves=False)
    assert downloads == [url] and object_reads(caplog) == 1  # the ETag is unchanged: HEADs alone
    assert cached_files(tmp_path) == [copy] and copy.stat().st_mtime_ns == stamp

    shuffled = pd.read_csv(IRIS).sample(frac=1, random_state=1)
    s3.put_object(Bucket=BUCKET, Key="tables/iris.csv", Body=shuffled.to_csv(index=False).encode())
    try:
        with pytest.raises(Exception, match="its data changed since it was trained") as refused:
            dltrain.evaluate(second.run_dir)
        assert url in str(refused.value) and "has other content now" in str(refused.value)
        assert downloads == [url, url] and object_reads(caplog) == 2  # the new ETag: downloaded again, the old copy gone
        assert len(cached_files(tmp_path)) == 1 and cached_files(tmp_path) != [copy]
        third = dltrain.fit(config(url, tmp_path / "runs"), progress=False, curves=False)
        assert json.loads((third.run_dir / "data.json").read_text())["source"]["etag"] != etag
        assert downloads == [url, url]
    finally:
        s3.upload_file(str(IRIS), BUCKET, "tables/iris.csv")


def yaml_source(run_dir):
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["source"]


@pytest.mark.parametrize("in_memory", [True, False])
def test_parquet_from_s3_whole_and_streamed(s3, tmp_path, in_memory, downloads):
    import dltrain

    url = f"s3://{BUCKET}/tables/iris.parquet"
    result = dltrain.fit(config({"type": "parquet", "path": url}, tmp_path / "runs", in_memory=in_memory), progress=False, curves=False)
    assert result.best["val_accuracy"] >= 0.6, result.best
    assert downloads == [url]  # streamed epoch after epoch from one copy
    assert json.loads((result.run_dir / "data.json").read_text())["source"]["path"] == url
    assert dltrain.evaluate(result.run_dir, baseline=False).rows > 0


def test_a_csv_over_http(web, tmp_path):
    import dltrain

    url = f"{web}/iris.csv"
    result = dltrain.fit(config({"path": url}, tmp_path / "runs"), progress=False, curves=False)
    assert result.best["val_accuracy"] >= 0.6
    source = json.loads((result.run_dir / "data.json").read_text())["source"]
    assert source["path"] == url and source["etag"]  # Last-Modified and size, from the server
    assert dltrain.evaluate(result.run_dir, baseline=False).rows > 0
    packed = dltrain.check(config(f"{web}/iris.csv.gz", tmp_path / "runs"))  # compressed, as pandas reads it
    assert packed.data.info["table_rows"] == 150 and packed.data.info["source"]["type"] == "csv"


def test_an_image_prefix_on_s3_trains_a_small_cnn(s3, tmp_path, cli):
    url = f"s3://{BUCKET}/images/"
    body = f"""\
seed: 0
data:
  source: {url}
  split: {{train: 0.6, val: 0.2, test: 0.2}}
  batch_size: 8
model:
  layers: [{{Conv2d: [4, 3]}}, ReLU, {{AdaptiveAvgPool2d: {{output_size: [1, 1]}}}}, Flatten, {{Linear: auto}}]
loss: CrossEntropyLoss
optimizer: {{type: Adam, lr: 0.05}}
train: {{epochs: 3}}
"""
    path = write(tmp_path / "images.yaml", body)
    fitted = cli("fit", path, "--out", tmp_path / "runs")
    assert fitted.code == 0, fitted.output
    run = tmp_path / "runs"
    source = json.loads((run / "data.json").read_text())["source"]
    assert source["type"] == "images" and source["path"] == url and source["etag"]
    mirrored = cached_files(tmp_path)
    assert sum(p.suffix == ".png" for p in mirrored) == 24
    stamps = {p: p.stat().st_mtime_ns for p in mirrored}
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.code == 0, evaluated.output
    assert "changed" not in evaluated.stderr
    assert {p: p.stat().st_mtime_ns for p in cached_files(tmp_path)} == stamps  # nothing fetched again
    # new images under a url: predicted from the mirror, named by their urls
    predicted = cli("predict", run, f"s3://{BUCKET}/images/red/", "-o", tmp_path / "red.csv")
    assert predicted.code == 0, predicted.output
    rows = pd.read_csv(tmp_path / "red.csv")
    assert len(rows) == 12 and rows["path"].str.startswith(f"s3://{BUCKET}/images/red/").all(), rows.head()
    assert set(rows["prediction"]) <= {"red", "blue"}
    one = cli("predict", run, f"s3://{BUCKET}/images/blue/001.png")
    assert one.code == 0, one.output
    assert one.stdout.splitlines()[1].startswith(f"s3://{BUCKET}/images/blue/001.png,")
    labelled = cli("evaluate", run, "--data", url, "--json")  # a prefix of class folders, as fit reads one
    assert labelled.code == 0, labelled.output
    assert json.loads(labelled.stdout)["rows"] == 24


def test_predict_and_evaluate_read_tables_from_urls(s3, web, tmp_path, cli):
    """The rows to predict and a labelled table to evaluate may be urls too, as a source may."""
    path = write(tmp_path / "c.yaml", json.dumps(config(str(IRIS), tmp_path / "runs")))
    assert cli("fit", path, "--out", tmp_path / "run").code == 0
    run = tmp_path / "run"
    predicted = cli("predict", run, f"s3://{BUCKET}/tables/iris.csv", "-o", tmp_path / "p.csv")
    assert predicted.code == 0, predicted.output
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 150 and list(rows["row"][:3]) == [0, 1, 2]
    assert (rows["prediction"] == pd.read_csv(IRIS)["species"]).mean() > 0.8
    packed = cli("predict", run, f"{web}/iris.csv.gz")  # over http, compressed, to standard output
    assert packed.code == 0, packed.output
    assert len(packed.stdout.splitlines()) == 151
    evaluated = cli("evaluate", run, "--data", f"s3://{BUCKET}/tables/iris.parquet", "--json")
    assert evaluated.code == 0, evaluated.output
    result = json.loads(evaluated.stdout)
    assert result["rows"] == 150 and result["metrics"]["accuracy"] > 0.8
    assert (run / "evaluate_iris.json").is_file()  # named by the file, as a local one is
    # init on a url writes it as the source; the config fits as written
    written = cli("init", f"s3://{BUCKET}/tables/iris.parquet", "--target", "species", "-o", tmp_path / "started.yaml")
    assert written.code == 0, written.output
    started = yaml.safe_load((tmp_path / "started.yaml").read_text())
    assert started["data"]["source"] == f"s3://{BUCKET}/tables/iris.parquet"
    trained = cli("fit", tmp_path / "started.yaml", "train.epochs=2", "--out", tmp_path / "started")
    assert trained.code == 0, trained.output
    for url, said in [(f"s3://{BUCKET}/tables/nope.csv", "no such object"), (f"{web}/nope.csv", "HTTP 404"), (f"s3://{BUCKET}/tables/iris.txt", "expected a table file")]:
        wrong = cli("predict", run, url)
        assert wrong.code == 2 and url in wrong.stderr and said in wrong.stderr, wrong.output
        assert "Traceback" not in wrong.output


def test_wrong_urls_are_exit_2_naming_the_url(s3, web, tmp_path, cli):
    for url, said in [
        (f"s3://{BUCKET}/tables/nope.csv", "no such object"),
        ("s3://no-such-bucket-here/iris.csv", "no such bucket"),
        (f"s3://{BUCKET}/nothing-here/", "no files under this prefix"),
        (f"{web}/nope.csv", "not found on the server (HTTP 404)"),
        (f"{web}/secret/iris.csv", "access denied (HTTP 403)"),
    ]:
        path = write(tmp_path / "c.yaml", json.dumps(config(url, tmp_path / "runs")))
        result = cli("fit", path)
        assert result.code == 2, (url, result.output)
        assert url in result.stderr and said in result.stderr, result.stderr
        assert "Traceback" not in result.output


def test_no_credentials_names_the_variables_that_give_them(s3, tmp_path, cli, monkeypatch):
    import s3fs

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()  # one made with the credentials would keep them
    try:
        url = f"s3://{BUCKET}/tables/iris.csv"
        result = cli("fit", write(tmp_path / "c.yaml", json.dumps(config(url, tmp_path / "runs"))))
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert result.code == 2 and url in result.stderr and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in result.stderr, result.output


def test_a_missing_protocol_package_is_named(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as where it is not installed
    path = write(tmp_path / "c.yaml", json.dumps(config("gs://bucket/iris.csv", tmp_path / "runs")))
    result = cli("fit", path)
    assert result.code == 2 and "gs://bucket/iris.csv" in result.stderr and "gcsfs" in result.stderr, result.output


def test_old_sources_load_and_a_url_is_no_local_file():
    from dltrain.data.remote import is_remote
    from dltrain.data.sources import ResolvedSource

    old = ResolvedSource.from_dict({"type": "csv", "path": "/data/iris.csv"})
    assert old.to_dict() == {"type": "csv", "path": "/data/iris.csv"} and old.files() == ["/data/iris.csv"]
    remote = ResolvedSource.from_dict({"type": "csv", "path": "s3://b/k.csv", "etag": "abc"})
    assert remote.files() == [] and remote.label == "s3://b/k.csv"
    assert all(map(is_remote, ["s3://b/k", "gs://b/k", "az://c/k", "abfs://c/k", "https://h/k.csv", "HTTP://h/k"]))
    assert not any(map(is_remote, ["data/iris.csv", "sqlite:///x.db", "postgresql://u@h/db", "C:\\x.csv", None]))


def test_no_fsspec_says_what_to_install(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    path = write(tmp_path / "c.yaml", json.dumps(config("s3://bucket/iris.csv", tmp_path / "runs")))
    result = cli("fit", path)
    assert result.code == 2 and "s3://bucket/iris.csv" in result.stderr and "pip install 'dltrain[remote]'" in result.stderr, result.output

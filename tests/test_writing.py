"""Every file dltrain writes goes through files.write_output: never over a device, a folder or a
file dltrain did not write; whole or not at all (a temporary renamed), the temporaries of killed
writers cleaned up. And the readers of many runs skip a damaged one with a warning."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dltrain.files import REGISTRY, write_output, written_by_dltrain
from tests.conftest import ROOT


def _fit(cli, out: str | Path, *overrides: str) -> Path:
    result = cli("fit", "configs/iris.yaml", "train.epochs=1", *overrides, "--out", out)
    assert result.code == 0, result.output
    return Path(out)


def _rows(path: str | Path = "rows.csv") -> Path:
    pd.read_csv("data/iris.csv").drop(columns="species").to_csv(path, index=False)
    return Path(path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- not a regular file: written into, never replaced


@pytest.fixture
def dev_null():
    """/dev/null, put back as the device it is should a failing test have replaced it (as root)."""
    path = Path("/dev/null")
    assert stat.S_ISCHR(os.stat(path).st_mode)
    yield path
    if not stat.S_ISCHR(os.stat(path).st_mode):
        os.remove(path)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.chmod(path, 0o666)


def test_predict_and_schema_write_into_dev_null_and_leave_it_a_device(workdir, cli, dev_null):
    _fit(cli, "r")
    rows = _rows()
    predicted = cli("predict", "r", rows, "--output", dev_null)
    assert predicted.code == 0, predicted.output
    assert "150 predictions written to /dev/null" in predicted.stderr
    assert stat.S_ISCHR(os.stat(dev_null).st_mode)
    schema = cli("schema", "-o", dev_null)
    assert schema.code == 0, schema.output
    assert stat.S_ISCHR(os.stat(dev_null).st_mode)
    assert not list(Path("/dev").glob(".null.*.tmp"))  # nothing made beside it
    assert not (Path("/dev") / REGISTRY).exists()


def test_a_fifo_is_written_into_and_stays_a_fifo(tmp_path, cli):
    fifo = tmp_path / "schema.pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = cli("schema", "-o", fifo)
    reader.join(timeout=30)
    assert result.code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received[0])["$id"] == "https://dltrain.dev/schema/config.json"


def test_a_folder_is_an_error_that_names_it(workdir, cli):
    _fit(cli, "r")
    rows = _rows()
    Path("out").mkdir()
    for args in (("predict", "r", rows, "--output", "out"), ("schema", "-o", "out"), ("plot", "r", "-o", "out")):
        result = cli(*args)
        assert result.code == 2 and "out" in result.stderr and "folder" in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    Path("a-file").write_text("mine")
    refused = cli("export", "r", "-o", "a-file")
    assert refused.code == 2 and "a-file: a file, not a folder" in refused.stderr
    assert Path("a-file").read_text() == "mine"
    # a folder where evaluate's JSON goes is named too, and the run is left as it was
    Path("r/evaluate_test.json").mkdir()
    evaluated = cli("evaluate", "r")
    assert evaluated.code == 2 and "evaluate_test.json: a folder" in evaluated.stderr


# ----- never over a file dltrain did not write


def test_export_refuses_a_users_encoders_json_and_rewrites_its_own(workdir, cli):
    _fit(cli, "r")
    Path("deploy").mkdir()
    Path("deploy/encoders.json").write_text('{"my": "own encoders"}\n')
    before = Path("deploy/encoders.json").read_bytes()
    refused = cli("export", "r", "-o", "deploy")
    assert refused.code == 2, refused.output
    message = " ".join(refused.stderr.split())
    assert "deploy/encoders.json: the file exists and was not written by dltrain export" in message
    assert "Remove it first, or give another name" in message
    assert Path("deploy/encoders.json").read_bytes() == before
    assert not Path("deploy/model.torchscript.pt").exists()  # refused before anything was written
    for _ in range(2):  # its own export, written again
        assert cli("export", "r", "-o", "mine").code == 0
    assert json.loads(Path("mine/encoders.json").read_text())["format"] == "torchscript"


def test_plot_refuses_a_matplotlib_png_it_did_not_draw(workdir, cli):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    _fit(cli, "r")
    figure, axis = plt.subplots()
    axis.plot([1, 2, 3])
    figure.savefig("theirs.png")  # matplotlib's, not dltrain's: the old check let it be replaced
    plt.close(figure)
    before = Path("theirs.png").read_bytes()
    refused = cli("plot", "r", "-o", "theirs.png")
    assert refused.code == 2 and "was not drawn by dltrain plot" in " ".join(refused.stderr.split())
    assert Path("theirs.png").read_bytes() == before
    assert cli("plot", "r", "-o", "mine.png").code == 0
    assert Image.open("mine.png").text["dltrain"] == "plot"
    assert cli("plot", "r", "-o", "mine.png").code == 0  # its own picture, drawn again
    Path("elsewhere").mkdir()
    shutil.copy("mine.png", "elsewhere/mine.png")  # copied alone: its mark goes with it
    assert cli("plot", "r", "-o", "elsewhere/mine.png").code == 0
    shutil.copy("theirs.png", "mine.png")  # a user's picture put in place of dltrain's
    again = cli("plot", "r", "-o", "mine.png")
    assert again.code == 2 and Path("mine.png").read_bytes() == before
    assert not Path(REGISTRY).exists()  # a PNG carries its mark: no list needed beside it
    assert cli("plot", "r", "-o", "curves.svg").code == 0 and cli("plot", "r", "-o", "curves.svg").code == 0  # listed
    assert written_by_dltrain(Path("curves.svg"))
    Path("drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert cli("plot", "r", "-o", "drawing.svg").code == 2 and "<svg" in Path("drawing.svg").read_text()


def test_predict_refuses_a_users_table_even_with_the_outputs_columns(workdir, cli):
    _fit(cli, "r")
    rows = _rows()
    assert cli("predict", "r", rows, "--output", "p.csv").code == 0
    assert cli("predict", "r", rows, "--output", "p.csv").code == 0  # its own output, written again
    shutil.copy("p.csv", "copy.csv")  # the same columns (the old check's rule), but the user's file
    Path("copy.csv").write_text(Path("copy.csv").read_text().replace("setosa", "SETOSA"))
    before = Path("copy.csv").read_bytes()
    refused = cli("predict", "r", rows, "--output", "copy.csv")
    assert refused.code == 2 and "is not an earlier output of this prediction" in " ".join(refused.stderr.split())
    assert Path("copy.csv").read_bytes() == before
    assert written_by_dltrain(Path("p.csv")) and not written_by_dltrain(Path("copy.csv"))


def test_a_report_refuses_a_users_page(workdir, cli):
    pytest.importorskip("matplotlib")
    _fit(cli, "r")
    Path("page.html").write_text("<!DOCTYPE html>\n<p>my notes on the dltrain report</p>\n")
    before = Path("page.html").read_bytes()
    refused = cli("report", "r", "-o", "page.html")
    assert refused.code == 2 and "was not written by dltrain report" in " ".join(refused.stderr.split())
    assert Path("page.html").read_bytes() == before


# ----- whole or not at all: a temporary file beside the target, renamed


@pytest.mark.parametrize("format", ["torchscript", "export"])
def test_export_renames_its_model_into_place(workdir, cli, format):
    import torch

    _fit(cli, "r")
    name = {"torchscript": "model.torchscript.pt", "export": "model.pt2"}[format]
    assert cli("export", "r", "--format", format).code == 0
    model = Path("r/export") / name
    first = os.stat(model).st_ino
    keep = open(model, "rb")  # noqa: SIM115  (a reader of the old file keeps reading the old bytes)
    assert cli("export", "r", "--format", format).code == 0
    assert os.stat(model).st_ino != first  # a new file renamed over it, not the old one rewritten
    assert os.fstat(keep.fileno()).st_ino == first
    keep.close()
    assert not list(model.parent.glob(".*.tmp"))
    loaded = torch.jit.load(model) if format == "torchscript" else torch.export.load(str(model)).module()
    assert loaded(torch.zeros(2, 4)).shape == (2, 3)


KILLED_WRITER = """
import sys, time
from pathlib import Path
from dltrain.files import write_output

def half(tmp):  # as torch.onnx.export writes a file by name: the first bytes, then a long wait
    with open(tmp, "wb") as handle:
        handle.write(b"half a model")
        handle.flush()
        print("writing", flush=True)
        time.sleep(120)

write_output(Path(sys.argv[1]), half)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_and_its_temporary_is_cleaned(tmp_path):
    target = tmp_path / "model.onnx"
    write_output(target, b"the good model")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert target.read_bytes() == b"the good model"
    left = list(tmp_path.glob(".model.onnx.*.tmp"))
    assert len(left) == 1 and left[0].read_bytes() == b"half a model" and f"-{writer.pid}-" in left[0].name
    write_output(target, b"the next model")  # its writer is gone: removed at once
    assert target.read_bytes() == b"the next model"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_writer_that_fails_leaves_nothing(tmp_path):
    target = tmp_path / "model.pt2"
    write_output(target, b"the good model")

    def fails(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("the exporter failed")

    with pytest.raises(RuntimeError):
        write_output(target, fails)
    assert target.read_bytes() == b"the good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [REGISTRY, "model.pt2"]


AT_ONCE = """
import sys
from pathlib import Path
from dltrain.files import write_output

folder, me = Path(sys.argv[1]), sys.argv[2]
for n in range(25):
    write_output(folder / f"{me}-{n}.csv", f"{me},{n}\\n".encode(), sync=False)
"""


def test_writers_at_once_in_one_folder_keep_each_others_entries(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", AT_ONCE, str(tmp_path), f"w{k}"], cwd=ROOT) for k in range(4)]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    written = [p for p in tmp_path.iterdir() if p.name != REGISTRY]
    assert len(written) == 100 and all(written_by_dltrain(p) for p in written)  # none lost to another's update
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temporaries_go_and_live_ones_stay(tmp_path):
    target = tmp_path / "p.csv"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from dltrain import files

        host = files._HOST
        old = tmp_path / ".p.csv.k3j4l5m6.tmp"  # an earlier version's name: no pid, so by age
        fresh = tmp_path / ".p.csv.a1b2c3d4.tmp"
        live = tmp_path / f".p.csv.{host}-{alive.pid}-q1w2e3r4.tmp"  # being written by a live process
        other_host = tmp_path / f".p.csv.elsewhere-{alive.pid + 100000}-z9x8c7v6.tmp"  # a process this machine cannot see
        another_file = tmp_path / ".q.csv.k3j4l5m6.tmp"
        for path in (old, fresh, live, other_host, another_file):
            path.write_bytes(b"partial")
        hour_ago = time.time() - files.STALE_AFTER - 60
        os.utime(old, (hour_ago, hour_ago))
        os.utime(another_file, (hour_ago, hour_ago))
        write_output(target, b"prediction\n")
        assert not old.exists()
        assert fresh.exists() and live.exists() and other_host.exists()
        assert another_file.exists()  # only the temporaries of the file written are looked at
    finally:
        alive.kill()
        alive.wait()


# ----- evaluate --data never takes a split's file name


def test_evaluate_data_named_like_a_split_keeps_the_runs_own_result(workdir, cli):
    _fit(cli, "runs/r", "train.epochs=3")
    assert cli("evaluate", "runs/r").code == 0
    own = Path("runs/r/evaluate_test.json").read_bytes()
    listed = [line for line in cli("runs").stdout.splitlines() if "val_loss" in line]
    assert " acc " in listed[0]
    Path("other").mkdir()
    pd.read_csv("data/iris.csv").iloc[:30].to_csv("other/test.csv", index=False)
    result = cli("evaluate", "runs/r", "--data", "other/test.csv", "--json")
    assert result.code == 0, result.output
    assert Path("runs/r/evaluate_test.json").read_bytes() == own
    assert json.loads(Path("runs/r/evaluate_data-test.json").read_text())["rows"] == 30
    assert [line for line in cli("runs").stdout.splitlines() if "val_loss" in line] == listed  # the test split's figure still
    assert cli("evaluate", "runs/r", "--data", "other/test.csv").code == 0  # its own file, written again


# ----- readers of many runs skip a damaged one


def _damaged_copies(good: Path, test: str) -> dict[str, Path]:
    """Copies of a good run, each damaged one way, named for the test (a warning is said once a process)."""
    copies = {}
    for name in ("truncated", "scalar", "no-epoch"):
        copies[name] = good.parent / f"{test}-{name}"
        shutil.copytree(good, copies[name])
    path = copies["truncated"] / "evaluate_test.json"  # as a writer killed mid-write would leave it, without the rename
    path.write_text('{\n  "split": "test",\n  "rows": 23,\n  "metr')
    config = copies["scalar"] / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    saved["train"] = 5  # a scalar where a mapping belongs
    config.write_text(yaml.safe_dump(saved))
    metrics = copies["no-epoch"] / "metrics.csv"
    metrics.write_text(pd.read_csv(metrics).drop(columns="epoch").to_csv(index=False))
    return copies


def test_runs_skips_damaged_runs_with_a_warning(workdir, cli):
    good = _fit(cli, "runs/good")
    assert cli("evaluate", good).code == 0
    copies = _damaged_copies(good, "runs")
    result = cli("runs")
    assert result.code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines() if "val_loss" in line]
    assert names == ["good"]
    warned = " ".join(result.stderr.split())
    for path in copies.values():
        assert f"skipped {path}" in warned
    assert "Traceback" not in result.output


def test_plot_skips_a_damaged_run_of_several(workdir, cli):
    pytest.importorskip("matplotlib")
    good = _fit(cli, "runs/good")
    copies = _damaged_copies(good, "plot")
    for name in ("scalar", "no-epoch"):
        result = cli("plot", good, copies[name], "-o", f"{name}.png")
        assert result.code == 0, result.output
        assert f"skipped {copies[name]}" in " ".join(result.stderr.split())
        assert "(3 curves of 1 run(s))" in result.stderr and Path(f"{name}.png").is_file()
    alone = cli("plot", copies["no-epoch"])
    assert alone.code == 2 and "needs the columns epoch and train_loss" in " ".join(alone.stderr.split())


def test_report_skips_a_damaged_run_of_several(workdir, cli):
    pytest.importorskip("matplotlib")
    good = _fit(cli, "runs/good")
    copies = _damaged_copies(good, "report")
    broken = good.parent / "broken"
    shutil.copytree(good, broken)
    (broken / "best.pt").write_bytes((broken / "best.pt").read_bytes()[:100])
    result = cli("report", good, copies["no-epoch"], broken, "-o", "both.html")
    assert result.code == 0, result.output
    warned = " ".join(result.stderr.split())
    assert f"skipped {broken}" in warned and f"no training curves of {copies['no-epoch']}" in warned
    assert "of 2 run(s))" in warned
    page = Path("both.html").read_text()
    assert "report-no-epoch" in page and ">broken<" not in page

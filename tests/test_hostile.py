"""Hostile input and a faulty machine: YAML that multiplies itself, tables too wide to read, layers
too large for memory, links that loop, decompression bombs, a cache that cannot be written or holds
the wrong thing; and a fuzz test that feeds generated YAML, tables and images to the real CLI in a
process bounded in time and memory, asserting an exit 0 or a clear exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, write


def _dltrain(*args, cwd: Path, memory_gb: float | None = None, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """dltrain in its own process, its address space capped at `memory_gb` (ulimit -v)."""

    def cap():
        if memory_gb:
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "dltrain", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
    )


def _bomb_yaml() -> str:
    """Ten anchors of nine aliases each, under a key nothing reads: 9**10 values once copied out."""
    lines = ["x-anchors:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n" + (ROOT / "configs" / "iris.yaml").read_text()


def test_an_alias_bomb_is_refused_before_it_grows(workdir):
    result = _dltrain("check", write(workdir / "bomb.yaml", _bomb_yaml()), cwd=workdir, memory_gb=4, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "aliases" in result.stderr and "at most" not in result.stderr.split("aliases")[0] and "Traceback" not in result.stderr
    recursive = _dltrain("check", write(workdir / "self.yaml", "a: &a [*a]\n"), cwd=workdir, timeout=60)
    assert recursive.returncode == 2 and "contains itself" in recursive.stderr


def test_a_header_of_too_many_columns_is_refused_before_it_is_parsed(workdir, cli):
    columns = 200_001
    (workdir / "wide.csv").write_text(",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("1" for _ in range(columns)) + "\n")
    config = write(workdir / "wide.yaml", "data: {source: wide.csv, target: c0}\nmodel: {layers: [{Linear: auto}]}\nloss: MSELoss\n")
    result = cli("check", config)
    assert result.code == 2 and "200,001 columns" in result.stderr and "wide.csv" in result.stderr


def test_a_layer_too_large_for_memory_is_named_before_it_is_allocated(workdir, cli):
    huge = cli("check", "configs/iris.yaml", "model.layers.0.Linear=100000000000")
    assert huge.code == 2 and "model.layers.0" in huge.stderr and "parameters" in huge.stderr
    capped = _dltrain("check", "configs/iris.yaml", "model.layers.0.Linear=100000000", cwd=workdir, memory_gb=4)
    assert capped.returncode == 2, capped.stderr[-2000:]
    assert "model.layers.0" in capped.stderr and "GB" in capped.stderr and "model.layers.3" not in capped.stderr  # the layer that is too large, not the next


def test_a_model_whose_training_step_would_not_fit_is_exit_2_before_the_step(workdir):
    """Weights that fit (320 MB), but a batch's layer outputs and gradients that do not: the kernel
    would kill the step without a word; the check names the sizes and what to make smaller."""
    capped = _dltrain("check", "configs/iris.yaml", "model.layers.0.Linear=10000000", "data.batch_size=128", cwd=workdir, memory_gb=8)
    assert capped.returncode == 2, capped.stderr[-2000:]
    message = " ".join(capped.stderr.split())
    assert "a training step of this model needs about" in message and "on a batch of 105 rows" in message  # the training split has 105
    assert "Linear alone gives 10,000,000 values per row" in message and "data.batch_size smaller" in message
    assert "Traceback" not in message


@pytest.fixture
def image_run(tmp_path, cli):
    from tests.test_images import SMALL, make_shapes

    folder = make_shapes(tmp_path / "shapes", 6)
    run = tmp_path / "run"
    assert cli("fit", write(tmp_path / "c.yaml", SMALL.format(source=folder)), "--out", run).code == 0
    return run, folder


def test_a_glob_through_looping_links_ends_and_names_each_image_once(image_run, tmp_path):
    run, folder = image_run
    photos = tmp_path / "photos" / "a"
    photos.mkdir(parents=True)
    for n, image in enumerate(sorted((folder / "circle").glob("*.png"))[:3]):
        (photos / f"{n}.png").write_bytes(image.read_bytes())
    (photos / "up").symlink_to("..")  # two links back up: a walk that follows them never ends
    (photos / "again").symlink_to("../..")
    result = _dltrain("predict", run, str(tmp_path / "photos" / "**" / "*.png"), "-o", tmp_path / "p.csv", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3


def _decompression_bomb(path: Path) -> Path:
    from PIL import Image

    Image.new("1", (20_000, 20_000)).save(path)  # 400 million pixels in a file of a few kB
    return path


def test_a_decompression_bomb_is_an_unreadable_image_not_a_traceback(image_run, tmp_path, cli):
    run, folder = image_run
    bomb = _decompression_bomb(folder / "circle" / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    predicted = cli("predict", run, bomb)
    assert predicted.code == 2 and "bomb.png" in predicted.stderr
    from tests.test_images import SMALL

    config = write(tmp_path / "c2.yaml", SMALL.format(source=folder))
    skipped = cli("fit", config, "data.on_error=skip", "--out", tmp_path / "skip")
    assert skipped.code == 0 and "bomb.png" in skipped.stderr and "skipped" in skipped.stderr
    stopped = cli("fit", config, "--out", tmp_path / "stop")
    assert stopped.code == 2 and "bomb.png" in stopped.stderr


def test_a_cache_that_cannot_be_written_or_holds_the_wrong_shape(image_run, tmp_path, cli, monkeypatch):
    import torch

    run, folder = image_run
    first = cli("evaluate", run, "--json")
    assert first.code == 0
    for cached in Path(os.environ["DLTRAIN_CACHE"]).rglob("*.pt"):  # the same keys, other contents
        torch.save({"values": torch.zeros(3, 1, 5, 5, dtype=torch.uint8), "kept": torch.ones(3, dtype=torch.bool), "failed": []}, cached)
    again = cli("evaluate", run, "--json")
    assert again.code == 0 and json.loads(again.stdout)["metrics"] == json.loads(first.stdout)["metrics"]
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("DLTRAIN_CACHE", str(blocked / "cache"))
    from tests.test_images import SMALL

    fitted = cli("fit", write(tmp_path / "c3.yaml", SMALL.format(source=folder)), "--out", tmp_path / "nocache")
    assert fitted.code == 0, fitted.output
    assert "cannot be written" in fitted.stderr and "going on" in fitted.stderr


def test_paths_of_a_table_are_its_folders_even_with_a_cell_that_is_no_image(tmp_path, cli):
    from tests.test_images import make_shapes

    folder = make_shapes(tmp_path / "table" / "images", 6)
    rows = [{"path": str(p.relative_to(tmp_path / "table")), "label": p.parent.name} for p in sorted(folder.rglob("*.png"))]
    rows[0]["path"] = "images/notes"  # no extension: one bad cell
    pd.DataFrame(rows).to_csv(tmp_path / "table" / "rows.csv", index=False)
    config = write(
        tmp_path / "c.yaml",
        "data:\n  source: table/rows.csv\n  target: label\n  inputs: [{column: path, type: image}]\n  on_error: skip\n"
        "model: {layers: [{Conv2d: [4, 3]}, ReLU, {AdaptiveAvgPool2d: {output_size: [1, 1]}}, Flatten, {Linear: auto}]}\n"
        "loss: CrossEntropyLoss\ntrain: {epochs: 1}\n",
    )
    result = cli("fit", config, "--out", tmp_path / "run")  # run from the folder above the table's
    assert result.code == 0, result.output
    assert "1 image(s) could not be read" in result.stderr and str(tmp_path / "table" / "images" / "notes") in result.stderr


# ----- fuzzing

_DRIVER = r"""
import json, sys, traceback
from typer.testing import CliRunner
from dltrain.cli import app
out = []
for case in json.load(open(sys.argv[1])):
    try:
        result = CliRunner().invoke(app, case["args"])
        error = result.exception if result.exception is not None and not isinstance(result.exception, SystemExit) else None
        out.append({"name": case["name"], "code": result.exit_code, "stderr": result.stderr[:600], "traceback": "".join(traceback.format_exception(error))[-1500:] if error else ""})
    except BaseException as error:
        out.append({"name": case["name"], "code": -1, "stderr": "", "traceback": repr(error)})
json.dump(out, open(sys.argv[2], "w"))
"""


def _hostile_yaml(rng: random.Random, base: str) -> str:
    """A config broken in one of the ways that users and attackers break them."""
    kind = rng.randrange(12)
    lines = base.splitlines()
    if kind == 0:  # bytes flipped
        text = list(base)
        for _ in range(rng.randint(1, 8)):
            text[rng.randrange(len(text))] = rng.choice("{}[]:&*!|>'\"%@`\t\x00#-?,")
        return "".join(text)
    if kind == 1:
        return base[: rng.randrange(len(base))]  # cut short
    if kind == 2:
        return "a: " + "[" * 5000 + "]" * 5000 + "\n"  # nested deeper than any parser's stack
    if kind == 3:
        return base.replace("epochs: 50", f"epochs: {rng.choice(['1e400', '-5', '99999999999999999999', '.nan', 'yes', '[1, 2]'])}")
    if kind == 4:
        return base.replace("lr: 1e-3", f"lr: {rng.choice(['-1', '.inf', 'fast', '{a: 1}', '1e-3 1e-3'])}")
    if kind == 5:
        return "!!python/object/apply:os.system ['touch pwned']\n"
    if kind == 6:
        return base + "\n" + "\n".join(f"k{i}: {i}" for i in range(rng.randint(1, 50)))
    if kind == 7:
        return "\n".join(line for line in lines if rng.random() > 0.3)
    if kind == 8:
        return base.replace("Linear: 32", f"Linear: {rng.choice(['0', '-3', '1e12', 'auto', '[]', '3.5', 'null'])}")
    if kind == 9:
        return "\xef\xbb\xbf" + base.replace("data/iris.csv", rng.choice(["/dev/zero", "/etc/shadow", "data", "data/iris.csv/x", "../" * 40 + "x.csv", "%s%n"]))
    if kind == 10:
        return "&a " + "\n".join("  " * 0 + line for line in lines) + "\nself: *a\n"
    return "".join(rng.choice("ab: -[]{}\n#&*") for _ in range(rng.randint(0, 300)))


def _hostile_table(rng: random.Random, path: Path) -> Path:
    kind = rng.randrange(9)
    good = (ROOT / "data" / "iris.csv").read_bytes()
    if kind == 0:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
    elif kind == 1:
        data = good[: rng.randrange(len(good))]
    elif kind == 2:
        data = good.split(b"\n")[0] + b"\n"  # a header, no rows
    elif kind == 3:
        data = good.replace(b",", b";", rng.randint(1, 200))  # separators that change mid-file
    elif kind == 4:
        data = good.replace(b"setosa", b"", rng.randint(1, 60))  # missing targets
    elif kind == 5:
        data = good + b"1,2,3,4,5,6,7,8,9\n" + b"\x00" * 50
    elif kind == 6:
        data = good.replace(b"5.1", b"x" * 100_000, 1)
    elif kind == 7:
        data = "\ufeff".encode() + good.decode().replace("a", "\u00e4").encode("latin-1", "replace")
    else:
        data = b"sepal_length,sepal_width,petal_length,petal_width,species\n" + b"1,2,3,4\n" * 30
    path.write_bytes(data)
    return path


def _hostile_image(rng: random.Random, kind: int, path: Path, good: bytes) -> None:
    if kind == 0:
        path.write_bytes(b"")
    elif kind == 1:
        path.write_bytes(good[: rng.randrange(8, len(good))])
    elif kind == 2:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(500)))
    elif kind == 3:
        path.write_bytes(good[:30] + bytes(rng.randrange(256) for _ in range(200)) + good[230:])
    else:
        _decompression_bomb(path)


def test_fuzz_hostile_configs_tables_and_images(workdir):
    from tests.test_images import make_shapes

    rng = random.Random(16)
    base = (ROOT / "configs" / "iris.yaml").read_text()
    cases = []
    for n in range(40):
        cases.append({"name": f"yaml {n}", "args": ["check", str(write(workdir / f"y{n}.yaml", _hostile_yaml(rng, base)))]})
    for n in range(18):
        table = _hostile_table(rng, workdir / f"t{n}.csv")
        config = write(workdir / f"t{n}.yaml", base.replace("data/iris.csv", table.name))
        cases.append({"name": f"table {n}", "args": ["check", str(config)]})
    folder = make_shapes(workdir / "imgs", 4)
    good = next(folder.rglob("*.png")).read_bytes()
    for kind in range(5):  # one of each
        _hostile_image(rng, kind, folder / "circle" / f"z{kind}.png", good)
    for on_error in ("raise", "skip"):
        config = write(
            workdir / f"i-{on_error}.yaml",
            f"data: {{source: imgs, on_error: {on_error}, cache: false, split: {{train: 0.6, val: 0.2, test: 0.2}}}}\n"
            "model: {layers: [{Conv2d: [4, 3]}, ReLU, {AdaptiveAvgPool2d: {output_size: [1, 1]}}, Flatten, {Linear: auto}]}\n"
            "loss: CrossEntropyLoss\ntrain: {epochs: 1}\n",
        )
        cases.append({"name": f"images {on_error}", "args": ["fit", str(config), "--out", str(workdir / f"run-{on_error}")]})
    (workdir / "cases.json").write_text(json.dumps(cases))
    (workdir / "driver.py").write_text(_DRIVER)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    subprocess.run(
        [sys.executable, "driver.py", "cases.json", "out.json"], cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=True, preexec_fn=cap
    )
    results = json.loads((workdir / "out.json").read_text())
    assert len(results) == len(cases)
    bad = [r for r in results if r["code"] not in (0, 2) or r["traceback"]]
    assert not bad, json.dumps(bad, indent=1)[:6000]
    assert all("error" in r["stderr"] for r in results if r["code"] == 2)  # each refusal says why
    assert not (workdir / "pwned").exists()
    codes = {r["name"]: r["code"] for r in results}
    assert codes["images raise"] == 2 and codes["images skip"] == 0


@pytest.mark.parametrize("key", ["optimizer", "epoch", "history", "rng", "best"])
def test_resuming_a_checkpoint_missing_a_key_is_exit_2(workdir, cli, key):
    import torch

    assert cli("fit", "configs/iris.yaml", "train.epochs=1", "--out", "r").code == 0
    for name in ("last.pt", "best.pt"):
        state = torch.load(workdir / "r" / name, weights_only=True)
        del state[key]
        torch.save(state, workdir / "r" / name)
    result = cli("fit", "--resume", "r", "train.epochs=2")
    assert result.code == 2 and "damaged" in result.stderr and "Traceback" not in result.output


def test_a_killed_torchrun_rank_stops_the_other_with_one_line(workdir):
    """The surviving rank says in a line that its peer stopped, instead of gloo's tracebacks."""
    import signal
    import time

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dltrain", "fit", "configs/iris.yaml", "train.epochs=100000", "--out", "r"]
    job = subprocess.Popen(command, cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not ((workdir / "r" / "metrics.csv").is_file() and len((workdir / "r" / "metrics.csv").read_text().splitlines()) > 3):
            time.sleep(0.2)
        ranks = subprocess.run(["pgrep", "-f", "-P", str(job.pid), "dltrain fit"], capture_output=True, text=True).stdout.split()
        if not ranks:  # torchrun's workers are children of its elastic agent
            agents = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
            ranks = [p for a in agents for p in subprocess.run(["pgrep", "-P", a], capture_output=True, text=True).stdout.split()] or agents
        assert len(ranks) >= 2, ranks
        os.kill(int(sorted(ranks, key=int)[-1]), signal.SIGKILL)  # the last rank
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0
    assert "another process of this torchrun job stopped" in output, output[-3000:]
    assert "[rank0]: Traceback" not in output


@pytest.mark.parametrize("how", ["file size limit", "read-only folder"])
def test_evaluate_prints_its_result_when_the_run_cannot_be_written(workdir, cli, how):
    """A run on a read-only or full disk: the figures asked for are printed, with a warning that
    evaluate_test.json was not kept, and nothing half-written is left."""
    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "r").code == 0
    run = workdir / "r"
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder; the file size limit stands for it")
        run.chmod(0o555)

    def limit():
        if how == "file size limit":
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write of a byte fails (EFBIG)

    try:
        result = subprocess.run(
            [sys.executable, "-m", "dltrain", "evaluate", "r", "--json"],
            cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, preexec_fn=limit,
        )
    finally:
        run.chmod(0o755)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["split"] == "test" and printed["rows"] > 0 and 0 <= printed["metrics"]["accuracy"] <= 1
    assert "evaluate_test.json was not written" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not (run / "evaluate_test.json").exists() and not list(run.glob(".*.tmp"))

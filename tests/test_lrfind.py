"""dltrain lr-find and optimizer.lr: auto, on the shipped iris table."""

from __future__ import annotations

import re

import torch
import yaml

from tests.conftest import iris_config


def _suggested(output: str) -> float:
    return float(re.search(r"suggested lr: ([0-9.e+-]+)", output).group(1))


def test_lr_find_suggests_a_sane_rate_and_writes_no_run(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path)
    result = cli("lr-find", config, "-o", tmp_path / "lr.png")
    assert result.code == 0, result.output
    lr = _suggested(result.stdout)
    assert 1e-4 <= lr <= 0.5, lr  # Adam on iris trains well from about 1e-3 to 1e-1
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "runs").exists()


def test_the_range_test_leaves_the_built_parts_as_they_were(tmp_path):
    from dltrain.build import build
    from dltrain.plan import make_plan
    from dltrain.tools.lrfind import range_test

    plan = make_plan(iris_config(tmp_path))
    parts = build(plan)
    weights = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = torch.random.get_rng_state()
    result = range_test(plan, parts, steps=60)
    assert all(torch.equal(weights[k], v) for k, v in parts.model.state_dict().items())
    assert parts.optimizer.state_dict()["state"] == {} and parts.optimizer.param_groups[0]["lr"] == 0.01
    assert torch.equal(rng, torch.random.get_rng_state())
    assert result.lrs[0] == 1e-7 and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    assert len(result.losses) == len(result.lrs) <= 60


def test_lr_auto_records_the_chosen_rate_and_trains(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = iris_config(tmp_path, **{"lr: 0.01": "lr: auto", "epochs: 3": "epochs: 40"})
    assert cli("check", config).code == 0
    result = cli("fit", config, "--out", tmp_path / "run")
    assert result.code == 0, result.output
    assert "optimizer.lr: auto ->" in result.output
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["optimizer"]["lr"]
    assert isinstance(recorded, float) and 1e-4 <= recorded <= 0.5
    import dltrain

    assert dltrain.evaluate(tmp_path / "run").metrics["accuracy"] >= 0.85
    resumed = cli("fit", "--resume", tmp_path / "run", "train.epochs=41")
    assert resumed.code == 0, resumed.output
    assert "range test" not in resumed.output  # the recorded number, not a new test
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["optimizer"]["lr"] == recorded


def test_lr_auto_from_the_python_api_and_a_dict(tmp_path):
    """dltrain.fit on a dict with lr: auto runs the same range test, with the data it encoded reused."""
    import dltrain

    config = yaml.safe_load(iris_config(tmp_path, **{"lr: 0.01": "lr: auto"}).read_text())
    config["data"]["source"] = str(tmp_path / "iris.csv")
    result = dltrain.fit(config, out=tmp_path / "api", progress=False)
    recorded = yaml.safe_load((result.run_dir / "config.yaml").read_text())["optimizer"]["lr"]
    assert isinstance(recorded, float) and 1e-4 <= recorded <= 0.5


def test_lr_find_bad_input_is_exit_2(tmp_path, cli):
    config = iris_config(tmp_path)
    result = cli("lr-find", config, "--steps", "3")
    assert result.code == 2 and "--steps 3" in result.output
    result = cli("lr-find", config, "-o", tmp_path / "lr.txt")
    assert result.code == 2 and "--output" in result.output

"""dltrain report: one self-contained HTML page whose numbers are evaluate's, ROC AUC as scikit-learn
computes it, and a permutation importance that puts a column of noise last."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")


def _cells(page: str, table_class: str) -> list[list[str]]:
    table = page.split(f"<table class='{table_class}'>", 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td>([^<]*)</td>", row) for row in table.split("</tr>") if "<td>" in row]


def test_the_report_of_a_classifier_holds_evaluates_numbers_and_nothing_from_outside(workdir, cli):
    assert cli("fit", "configs/breast_cancer.yaml", "train.epochs=5", "--out", "run").code == 0
    assert cli("evaluate", "run").code == 0
    result = cli("report", "run")
    assert result.code == 0, result.output
    page = (workdir / "run" / "report_test.html").read_text()
    evaluated = json.loads((workdir / "run" / "evaluate_test.json").read_text())
    assert _cells(page, "confusion") == [[str(v) for v in row] for row in evaluated["confusion_matrix"]["matrix"]]
    metrics = page.split("<h2>Metrics</h2>", 1)[1].split("</table>", 1)[0]
    rows = metrics.split("<tr")[2:]  # the run, then its baselines, as evaluate scored them
    assert re.findall(r"<td>([^<]*)</td>", rows[0]) == [f"{evaluated['metrics'][k]:.4f}" for k in evaluated["metrics"]]
    assert [re.search(r"<td class='l'>([^<]*)</td>", row)[1] for row in rows[1:]] == ["majority (baseline)", "linear (baseline)"]
    for row, (name, baseline) in zip(rows[1:], evaluated["baselines"].items()):
        cells = re.findall(r"<td>([^<]*)</td>", row)
        assert cells == [f"{baseline['metrics'][k]:.4f}" if k in baseline["metrics"] else "" for k in evaluated["metrics"]], name
    assert f"linear: {evaluated['baselines']['linear']['what']}" in page
    plain = cli("report", "run", "--no-baseline", "-o", "plain.html")
    assert plain.code == 0 and "(baseline)" not in (workdir / "plain.html").read_text()
    for section in ("Confusion matrix", "ROC and precision-recall curves", "Calibration", "The worst-predicted examples", "permutation importance", "Data", "Model", "Config as run"):
        assert section in page
    assert "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page)  # self-contained
    assert page.count("data:image/png;base64,") >= 5
    foreign = workdir / "notes.html"
    foreign.write_text("<p>mine</p>")
    result = cli("report", "run", "-o", str(foreign))
    assert result.code == 2 and "was not written by dltrain report" in result.output and foreign.read_text() == "<p>mine</p>"


def test_the_report_of_a_regression_and_of_two_runs(workdir, cli):
    assert cli("fit", "configs/diabetes.yaml", "train.epochs=4", "--out", "a").code == 0
    assert cli("fit", "configs/diabetes.yaml", "train.epochs=6", "--out", "b").code == 0
    result = cli("report", "a", "b", "-o", "both.html")
    assert result.code == 0, result.output
    page = (workdir / "both.html").read_text()
    assert "Predictions (in the target&#x27;s own units)" in page or "Predictions (in the target's own units)" in page
    metrics = page.split("<h2>Metrics</h2>", 1)[1].split("</table>", 1)[0]
    assert "<td class='l'>a</td>" in metrics and "<td class='l'>b</td>" in metrics
    assert cli("report", "missing").code == 2
    assert cli("evaluate", "a", "--report").code == 0 and (workdir / "a" / "report_test.html").is_file()  # beside evaluate_test.json


def test_roc_auc_is_scikit_learns_within_1e_6():
    sklearn = pytest.importorskip("sklearn.metrics")
    from dltrain.tools.report import roc_pr

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)) + np.eye(3)[labels] * 1.5
    logits[:50] = np.round(logits[:50], 1)  # ties
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    curves = roc_pr(probabilities, labels, 3)
    ours = np.mean([c["auc"] for c in curves])
    assert abs(ours - sklearn.roc_auc_score(labels, probabilities, multi_class="ovr")) < 1e-6
    binary = (labels == 1).astype(int)
    two = np.stack([1 - probabilities[:, 1], probabilities[:, 1]], 1)
    assert abs(roc_pr(two, binary, 2)[1]["auc"] - sklearn.roc_auc_score(binary, probabilities[:, 1])) < 1e-6
    assert abs(roc_pr(two, binary, 2)[1]["ap"] - sklearn.average_precision_score(binary, probabilities[:, 1])) < 1e-6


def test_permutation_importance_puts_a_column_of_noise_last(tmp_path, monkeypatch):
    import pandas as pd

    from dltrain.fitting import fit
    from dltrain.inference import score
    from dltrain.tools.report import permutation_importance
    from tests.conftest import write

    rng = np.random.default_rng(0)
    n = 600
    table = pd.DataFrame({"signal": rng.normal(size=n), "weak": rng.normal(size=n), "noise": rng.normal(size=n)})
    table["y"] = 3 * table["signal"] + 0.5 * table["weak"] + rng.normal(scale=0.1, size=n)
    table.to_csv(tmp_path / "t.csv", index=False)
    config = write(
        tmp_path / "t.yaml",
        "data: {source: t.csv, target: y, inputs: [noise, signal, weak]}\nmodel: {layers: [{Linear: 16}, ReLU, {Linear: auto}]}\n"
        "loss: mse\noptimizer: {type: Adam, lr: 0.01}\ntrain: {epochs: 30}\n",
    )
    monkeypatch.chdir(tmp_path)
    run = fit(config, progress=False, curves=False).run_dir
    found = permutation_importance(score(run))
    assert [r["column"] for r in found] == ["signal", "weak", "noise"]
    assert found[0]["mean"] > 10 * abs(found[-1]["mean"]) and all(r["std"] >= 0 for r in found)


def _chromium():
    import shutil

    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


def renders(page, folder) -> None:
    """The report opens in headless Chromium with no console message (no script error, nothing it
    failed to load), and a screenshot of it is a picture. Nothing where Chromium is missing."""
    import subprocess

    if _chromium() is None:
        return
    page = page.resolve()
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", f"--user-data-dir={folder / 'profile'}"]
    shown = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert "<h2>Metrics</h2>" in shown.stdout and "Config as run" in shown.stdout
    assert "CONSOLE" not in shown.stderr, shown.stderr
    shot = folder / "shot.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()], capture_output=True, timeout=60)
    assert shot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (.ci/run installs it)")
@pytest.mark.parametrize("config", ["iris", "breast_cancer", "diabetes"])
def test_the_report_renders_in_headless_chromium_without_console_errors(workdir, cli, config):
    assert cli("fit", f"configs/{config}.yaml", "train.epochs=3", "--out", "run").code == 0
    assert cli("report", "run").code == 0
    renders(workdir / "run" / "report_test.html", workdir)


def test_the_worst_images_are_shown_as_pictures(tmp_path, cli):
    from tests.conftest import write
    from tests.test_images import SMALL, make_shapes

    folder = make_shapes(tmp_path / "shapes", 15)
    config = write(tmp_path / "c.yaml", SMALL.format(source=folder))
    assert cli("fit", config, "--out", tmp_path / "run").code == 0
    result = cli("report", tmp_path / "run")
    assert result.code == 0, result.output
    page = (tmp_path / "run" / "report_test.html").read_text()
    thumbs = page.split("<div class='thumbs'>", 1)[1].split("</div>", 1)[0]
    assert thumbs.count("<figure>") == 12 and thumbs.count("data:image/png;base64,") == 12 and "true " in thumbs
    assert "permutation importance" not in page  # a picture has no columns to shuffle
    renders(tmp_path / "run" / "report_test.html", tmp_path)


def test_a_report_on_a_labelled_file_shows_that_files_rows(workdir, cli):
    import pandas as pd

    assert cli("fit", "configs/iris.yaml", "train.epochs=2", "--out", "run").code == 0
    table = pd.read_csv("data/iris.csv")
    table.loc[:9, "species"] = None  # rows without a target are left out: the rows shown must still be the right ones
    table.to_csv("labelled.csv", index=False)
    result = cli("report", "run", "--data", "labelled.csv")
    assert result.code == 0, result.output
    page = (workdir / "run" / "report_labelled.html").read_text()
    worst = page.split("The worst-predicted examples", 1)[1].split("</table>", 1)[0]
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", worst, re.S)]
    rows = [cells for cells in rows if cells]
    assert len(rows) == 12
    assert all(cells[0].startswith(f"true {cells[-1]},") for cells in rows)  # the outcome and the file's own species
    assert "140 rows" in page

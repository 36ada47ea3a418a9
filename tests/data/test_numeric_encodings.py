"""Numeric columns' transforms (log, quantile) and encodings (piecewise linear, periodic)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data import numeric
from dltrain.data.encoders import NumericEncoder, check_column_options, encoder_from_dict
from dltrain.data.schema import DataSchema
from tests.conftest import write

OPTIONS = {
    "log": ({"transform": "log"}, 1),
    "quantile": ({"transform": "quantile"}, 1),
    "piecewise_linear": ({"encoding": {"type": "piecewise_linear", "bins": 8}}, 8),
    "periodic": ({"encoding": {"type": "periodic", "frequencies": 5, "sigma": 0.5}}, 10),
    "periodic by name": ({"encoding": "periodic"}, 16),
    "quantile + piecewise_linear": ({"transform": "quantile", "encoding": {"type": "piecewise_linear"}}, 16),
}


def lognormal(n: int, seed: int = 0) -> pd.Series:
    return pd.Series(np.exp(2 * np.random.default_rng(seed).normal(size=n)))


def fit_in_chunks(series: pd.Series, options: dict, size: int) -> NumericEncoder:
    state = NumericEncoder.fit_state()
    for start in range(0, len(series), size):
        NumericEncoder.fit_update(state, "x", series.iloc[start : start + size], options)
    return NumericEncoder.fit_finish("x", state, options)


def plain_types(value) -> bool:
    """Only what a checkpoint may hold: str, float, int, None, lists and dicts of them (no NumPy)."""
    if isinstance(value, dict):
        return all(type(k) is str and plain_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_types(v) for v in value)
    return type(value) in (str, float, int, bool, type(None))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_has_its_width_and_round_trips_through_plain_data(name):
    options, width = OPTIONS[name]
    series = lognormal(500)
    encoder = NumericEncoder.fit("x", series, options)
    assert encoder.width == width and not encoder.plain
    new = pd.Series([0.5, np.nan, 3.0, -10.0, 1e6])  # missing, below and far above the training range
    out = encoder.transform(new)
    assert out.shape == (5, width) and out.dtype == torch.float32 and torch.isfinite(out).all()
    data = json.loads(json.dumps(encoder.to_dict()))
    assert plain_types(encoder.to_dict()) and data == encoder.to_dict()
    again = encoder_from_dict(data)
    assert again.width == width and torch.equal(again.transform(new), out)
    assert torch.equal(again.transform(series), encoder.transform(series))


def test_plain_numeric_saves_as_before():
    encoder = NumericEncoder.fit("x", pd.Series([1.0, 2.0, 3.0]), {})
    assert encoder.plain and encoder.to_dict() == {"type": "numeric", "column": "x", "mean": 2.0, "std": encoder.std}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_fitting_chunk_by_chunk_equals_fitting_at_once(name):
    options, _ = OPTIONS[name]
    series = lognormal(3000)
    chunked, whole = fit_in_chunks(series, options, 700).to_dict(), NumericEncoder.fit("x", series, options).to_dict()
    assert flat(chunked) == pytest.approx(flat(whole), rel=1e-12)  # sums differ in the last bits, by their order
    if options.get("transform"):  # the sample is the same values: exactly the same quantiles and log statistics
        assert chunked == whole


def flat(data: dict) -> list:
    out = []
    for value in data.values():
        out += flat(value) if isinstance(value, dict) else value if isinstance(value, list) else [value]
    return [v for v in out if isinstance(v, float)]


def test_a_column_larger_than_the_sample_is_fitted_on_a_uniform_sample_whatever_the_chunks(monkeypatch):
    monkeypatch.setattr(numeric, "SAMPLE_SIZE", 2000)
    series = pd.Series(np.random.default_rng(1).uniform(0, 100, 20_000))
    options = {"transform": "quantile"}
    whole = NumericEncoder.fit("x", series, options)
    assert fit_in_chunks(series, options, 3333).to_dict() == whole.to_dict()
    exact = np.quantile(series, np.linspace(0, 1, numeric.QUANTILES))
    assert np.abs(np.array(whole.quantiles) - exact).max() < 4  # of a range of 100: a sample of 2,000 of 20,000
    state = NumericEncoder.fit_state()
    NumericEncoder.fit_update(state, "x", series, options)
    assert len(state["sample"]["values"]) == 2000 and state["sample"]["min"] == series.min()


def test_quantile_gives_sklearns_normal_scores():
    sklearn = pytest.importorskip("sklearn.preprocessing")
    series = lognormal(1000)
    ours = NumericEncoder.fit("x", series, {"transform": "quantile"}).numbers(series).numpy()
    theirs = sklearn.QuantileTransformer(n_quantiles=256, output_distribution="normal").fit_transform(series.to_numpy()[:, None])[:, 0]
    assert np.abs(ours - theirs).max() < 1e-5
    assert abs(ours.mean()) < 0.05 and abs(ours.std() - 1) < 0.05


def test_quantile_puts_missing_values_at_the_centre_and_clips_outside_the_training_range():
    encoder = NumericEncoder.fit("x", pd.Series(np.arange(100.0)), {"transform": "quantile"})
    out = encoder.numbers(pd.Series([np.nan, -50.0, 49.5, 1e9])).tolist()
    assert out[0] == 0.0 and out[2] == pytest.approx(0.0, abs=1e-6)
    assert out[1] == pytest.approx(-5.199, abs=1e-3) and out[3] == pytest.approx(5.199, abs=1e-3)


def test_log_shifts_non_positive_columns_and_clips_below_the_training_minimum():
    positive = NumericEncoder.fit("x", pd.Series([0.0, 9.0, 99.0]), {"transform": "log"})
    assert (positive.minimum, positive.shift) == (0.0, 0.0)  # log1p(x) for a column without negatives
    logs = np.log1p([0.0, 9.0, 99.0])
    assert positive.mean == pytest.approx(logs.mean()) and positive.std == pytest.approx(logs.std())
    negative = NumericEncoder.fit("x", pd.Series([-5.0, 0.0, 10.0]), {"transform": "log"})
    assert (negative.minimum, negative.shift) == (-5.0, 5.0)  # log1p(x + 5): the minimum maps to 0
    below = negative.numbers(pd.Series([-5.0, -100.0, np.nan])).tolist()
    assert below[0] == below[1] and below[2] == 0.0


@pytest.mark.parametrize("transform", ["log", "quantile"])
def test_a_target_transform_is_undone_by_decode(transform):
    series = pd.Series(np.exp(np.random.default_rng(2).normal(size=400)) - 0.5)
    encoder = NumericEncoder.fit("y", series, {"transform": transform})
    decoded = encoder.decode(encoder.numbers(series)).numpy()
    assert np.abs(decoded - series.to_numpy()).max() < (1e-4 if transform == "log" else 0.05)
    from dltrain.task import NUMERIC, STANDARDIZED, Task

    task = Task.of(STANDARDIZED, "values", encoder)
    assert task.target_type == NUMERIC and torch.allclose(task.values(encoder.numbers(series)), encoder.decode(encoder.numbers(series)))
    # an output far past the training values decodes to their range, not to exp of it
    far = encoder.decode(torch.tensor([40.0, -40.0])).tolist()
    assert far == pytest.approx([series.max(), series.min()], rel=1e-3 if transform == "log" else 1e-9)
    again = NumericEncoder.from_dict(encoder.to_dict())
    assert again.decode(torch.tensor([40.0])).item() == pytest.approx(far[0])


def test_piecewise_linear_is_in_zero_one_and_counts_the_bins_below():
    encoder = NumericEncoder.fit("x", pd.Series(np.arange(1000.0)), {"encoding": {"type": "piecewise_linear", "bins": 4}})
    out = encoder.transform(pd.Series([0.0, 499.5, 999.0, 1e9, -1e9]))
    assert out.min() >= 0 and out.max() <= 1
    assert out[0].tolist() == [0, 0, 0, 0] and out[2].tolist() == [1, 1, 1, 1] and out[3].tolist() == [1, 1, 1, 1]
    assert out[1].tolist() == pytest.approx([1, 1, 0, 0], abs=1e-3) and out[4].tolist() == [0, 0, 0, 0]
    few = NumericEncoder.fit("x", pd.Series([1.0, 1.0, 1.0, 2.0]), {"encoding": {"type": "piecewise_linear", "bins": 4}})
    assert few.width == 4 and torch.isfinite(few.transform(pd.Series([1.0, 2.0, 1.5]))).all()  # repeated edges


def test_periodic_frequencies_are_fixed_by_the_column_and_sigma():
    options = {"encoding": {"type": "periodic", "frequencies": 4, "sigma": 2.0}}
    a = NumericEncoder.fit("x", lognormal(100), options)
    b = NumericEncoder.fit("x", lognormal(100, seed=5), options)
    assert a.encoding["frequencies"] == b.encoding["frequencies"]
    assert NumericEncoder.fit("z", lognormal(100), options).encoding["frequencies"] != a.encoding["frequencies"]
    out = a.transform(pd.Series([np.nan]))  # missing: the mean, standardized 0: sin 0 and cos 0
    assert out.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]


def test_a_table_plan_places_wide_numeric_columns_beside_plain_ones():
    table = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 1.0, 100.0, 5.0], "c": [0.0, 1.0, 0.0, 1.0]})
    encoders = [
        NumericEncoder.fit("a", table["a"], {}),
        NumericEncoder.fit("b", table["b"], {"encoding": {"type": "piecewise_linear", "bins": 3}}),
        NumericEncoder.fit("c", table["c"], {}),
    ]
    schema = DataSchema(encoders, NumericEncoder.fit("y", table["a"], {}))
    assert schema.input_spec().shape == (5,)
    x, _ = schema.encode_inputs(table, "rows")
    expected = torch.cat([e.transform(table[e.column]) for e in encoders], dim=1)
    assert torch.equal(x, expected)
    assert schema.encode_numbers(["a", "b", "c"], table.to_numpy(), "rows") is None  # encoded as a table


@pytest.mark.parametrize(
    "type_, options, fragment",
    [
        ("numeric", {"transform": "sqrt"}, "transform is one of log, quantile; found 'sqrt'"),
        (None, {"transform": "sqrt"}, "transform is one of log, quantile; found 'sqrt'"),
        ("numeric", {"encoding": {"type": "piecewise_linear", "bins": 0}}, "bins is a whole number of at least 2; found 0"),
        ("numeric", {"encoding": "fourier"}, "encoding is {type: piecewise_linear, bins: 16} or {type: periodic"),
        ("numeric", {"encoding": {"type": "periodic", "bins": 4}}, "encoding periodic has no key 'bins'; its keys: frequencies, sigma"),
        ("numeric", {"encoding": {"type": "periodic", "sigma": 0}}, "sigma is a number above 0; found 0"),
        ("category", {"transform": "log"}, "type category has no option 'transform'"),
    ],
)
def test_bad_options_say_what_is_accepted(type_, options, fragment):
    assert fragment in check_column_options(type_, options)


# through the command line


def regression_config(tmp_path, frame: pd.DataFrame, inputs: str, extra: str = "", layers: str = "    - Linear: auto", epochs: int = 20):
    frame.to_csv(tmp_path / "table.csv", index=False)
    return write(
        tmp_path / "config.yaml",
        f"""\
seed: 0
data:
  source: table.csv
  inputs: {inputs}
  target: y
  batch_size: 32
{extra}
model:
  layers:
{layers}
loss: MSELoss
optimizer: {{type: Adam, lr: 0.01}}
train:
  epochs: {epochs}
  device: cpu
""",
    )


def test_bad_options_are_exit_2_naming_the_key(tmp_path, cli):
    frame = pd.DataFrame({"a": np.arange(40.0), "t": ["p", "q", "r", "s"] * 10, "y": np.arange(40.0)})
    for inputs, fragment in [
        ("[{column: a, transform: sqrt}]", "data.inputs.0: transform is one of log, quantile; found 'sqrt'"),
        ("[{column: a, encoding: {type: piecewise_linear, bins: 0}}]", "bins is a whole number of at least 2; found 0"),
        ("[{column: t, type: category, transform: log}]", "type category has no option 'transform'"),
        ("[a, {column: t, transform: log}]", "column 't' is category, which has no option transform"),
    ]:
        result = cli("check", regression_config(tmp_path, frame, inputs))
        assert result.code == 2 and fragment in " ".join(result.stderr.split()), (inputs, result.output)
    for extra, fragment in [
        ("  target_transform: sqrt", "data.target_transform"),
        ("  target: {column: y, encoding: periodic}", "encoding is for inputs"),
    ]:
        config = regression_config(tmp_path, frame, "[a]", extra)
        config.write_text(config.read_text().replace("  target: y\n", "") if "target:" in extra else config.read_text())
        result = cli("check", config)
        assert result.code == 2 and fragment in " ".join(result.stderr.split()), (extra, result.output)


def test_fit_saves_the_encoders_and_predict_and_evaluate_use_them(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=400), np.exp(2 * rng.normal(size=400))
    frame = pd.DataFrame({"a": a, "b": b, "y": np.exp(a + 0.3 * np.log(b))})
    inputs = "[{column: a, encoding: {type: periodic, frequencies: 3}}, {column: b, transform: quantile, encoding: {type: piecewise_linear, bins: 6}}]"
    config = regression_config(tmp_path, frame, inputs, "  target_transform: log", "    - Linear: 16\n    - ReLU\n    - Linear: auto", 5)
    checked = cli("check", config)
    assert checked.code == 0, checked.output
    assert "periodic, 6 features" in checked.stdout and "quantile; piecewise_linear, 6 features" in checked.stdout
    assert cli("fit", config, "--out", "r").code == 0
    saved = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    schema = DataSchema.from_dict(saved["encoders"])
    assert [e.width for e in schema.inputs] == [6, 6] and schema.input_spec().shape == (12,)
    assert schema.target.transform_kind == "log" and saved["encoders"]["target"]["transform"] == "log"
    frame.drop(columns="y").to_csv("rows.csv", index=False)
    assert cli("predict", "r", "rows.csv", "--output", "p.csv").code == 0
    predicted = pd.read_csv("p.csv")["prediction"]
    assert (predicted > 0).all() and 0.3 < predicted.median() / frame["y"].median() < 3  # in the target's units
    first = cli("evaluate", "r", "--json")
    assert first.code == 0, first.output
    assert json.loads(first.stdout)["metrics"] == json.loads(cli("evaluate", "r", "--json").stdout)["metrics"]
    again = cli("predict", "r", "rows.csv", "--output", "q.csv")
    assert again.code == 0 and pd.read_csv("q.csv")["prediction"].equals(predicted)
    # streamed in chunks of 64 rows, the encoders fitted are the same
    import dltrain.data.tables

    monkeypatch.setattr(dltrain.data.tables, "CHUNK_ROWS", 64)
    assert cli("fit", config, "data.in_memory=false", "train.epochs=1", "--out", "s").code == 0
    streamed = torch.load(tmp_path / "s" / "best.pt", weights_only=True)["encoders"]
    for ours, theirs in zip([*saved["encoders"]["inputs"], saved["encoders"]["target"]], [*streamed["inputs"], streamed["target"]]):
        assert ours.keys() == theirs.keys() and flat(ours) == pytest.approx(flat(theirs), rel=1e-12)


def r2_of(tmp_path, cli, name: str, frame: pd.DataFrame, inputs: str, extra: str = "", layers: str = "    - Linear: auto", epochs: int = 20) -> float:
    folder = tmp_path / name
    folder.mkdir()
    config = regression_config(folder, frame, inputs, extra, layers, epochs)
    assert cli("fit", config, "--out", folder / "run").code == 0
    result = cli("evaluate", folder / "run", "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout)["metrics"]["r2"]


def test_log_target_fits_an_exponential_regression(tmp_path, cli):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=600), rng.normal(size=600)
    frame = pd.DataFrame({"a": a, "b": b, "y": np.exp(1.2 * a - 0.8 * b + 0.1 * rng.normal(size=600))})
    mlp = "    - Linear: 32\n    - ReLU\n    - Linear: auto"
    plain = r2_of(tmp_path, cli, "plain", frame, "[a, b]", layers=mlp, epochs=15)
    logged = r2_of(tmp_path, cli, "log", frame, "[a, b]", "  target_transform: log", layers=mlp, epochs=15)
    assert logged > 0.95 and logged > plain + 0.04, (plain, logged)  # measured: 0.91 -> 0.99


def test_quantile_and_log_inputs_make_heavy_tails_linear(tmp_path, cli):
    rng = np.random.default_rng(0)
    a, b = np.exp(2 * rng.normal(size=1000)), np.exp(2 * rng.normal(size=1000))
    frame = pd.DataFrame({"a": a, "b": b, "y": np.log(a) - 0.5 * np.log(b) + 0.1 * rng.normal(size=1000)})
    plain = r2_of(tmp_path, cli, "plain", frame, "[a, b]")
    quantile = r2_of(tmp_path, cli, "quantile", frame, "[{column: a, transform: quantile}, {column: b, transform: quantile}]")
    logged = r2_of(tmp_path, cli, "log", frame, "[{column: a, transform: log}, {column: b, transform: log}]")
    assert plain < 0.4 and quantile > 0.95 and logged > 0.7, (plain, quantile, logged)  # measured: 0.22, 0.995, 0.81


def test_encodings_let_a_linear_model_fit_a_wave(tmp_path, cli):
    rng = np.random.default_rng(0)
    a = rng.normal(size=1000)
    frame = pd.DataFrame({"a": a, "y": np.sin(3 * a) + 0.05 * rng.normal(size=1000)})
    plain = r2_of(tmp_path, cli, "plain", frame, "[a]")
    periodic = r2_of(tmp_path, cli, "periodic", frame, "[{column: a, encoding: {type: periodic, frequencies: 8, sigma: 1.0}}]")
    ple = r2_of(tmp_path, cli, "ple", frame, "[{column: a, encoding: {type: piecewise_linear, bins: 16}}]")
    assert plain < 0.1 and periodic > 0.9 and ple > 0.8, (plain, periodic, ple)  # measured: 0.01, 0.99, 0.91


def test_the_json_schema_takes_the_options():
    jsonschema = pytest.importorskip("jsonschema")
    from dltrain.tools.schema import config_schema

    validator = jsonschema.Draft202012Validator(config_schema())
    config = {
        "data": {
            "source": "t.csv",
            "target": "y",
            "target_transform": "log",
            "inputs": [{"column": "a", "transform": "quantile", "encoding": {"type": "piecewise_linear", "bins": 8}}, {"column": "b", "encoding": "periodic"}],
        },
        "model": {"layers": [{"Linear": "auto"}]},
        "loss": "MSELoss",
    }
    assert not list(validator.iter_errors(config))
    config["data"]["inputs"][0]["encoding"]["bins"] = 0
    config["data"]["target_transform"] = "sqrt"
    assert len(list(validator.iter_errors(config))) == 2

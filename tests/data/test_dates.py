"""Dates as inputs (issue 17): the year and the cycles that vary in training, inferred from text
cells or datetime columns, kept in the checkpoint; unique names are ids, not text to read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data.dates import DateEncoder, looks_like_dates
from dltrain.data.encoders import ENCODERS, encoder_from_dict, infer_type
from tests.conftest import write


def test_the_cycles_that_vary_in_training_set_the_width():
    days = pd.Series(["2021-03-01", "2021-03-02", "2021-03-09", None, "2022-03-05"])  # one month, several weekdays
    encoder = DateEncoder.fit("d", days, {})
    assert encoder.cycles == ["weekday", "day_of_year"] and encoder.width == 5
    x = encoder.transform(pd.Series(["2021-03-01", "not a date", None]))
    assert x.shape == (3, 5) and x.dtype == torch.float32
    assert torch.equal(x[1], torch.zeros(5)) and torch.equal(x[2], torch.zeros(5))  # no date: the centre
    assert abs(float(x[0, 1] ** 2 + x[0, 2] ** 2) - 1) < 1e-6  # sin and cos of one angle
    hours = DateEncoder.fit("t", pd.Series(["2021-03-01 08:00", "2021-03-01 17:30"]), {})
    assert hours.cycles == ["hour"]


def test_a_round_trip_and_chunks_give_the_same_encoder():
    rng = np.random.default_rng(0)
    days = pd.Series((pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, 500), unit="D")).strftime("%d/%m/%Y"))
    whole = DateEncoder.fit("d", days, {})
    state = DateEncoder.fit_state()
    for start in range(0, 500, 64):
        DateEncoder.fit_update(state, "d", days.iloc[start : start + 64])
    chunked = DateEncoder.fit_finish("d", state, {})
    assert chunked.cycles == whole.cycles and abs(chunked.mean - whole.mean) < 1e-9 and abs(chunked.std - whole.std) < 1e-9
    again = encoder_from_dict(json.loads(json.dumps(whole.to_dict())))
    assert torch.equal(again.transform(days), whole.transform(days))


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["2021-03-04", "2020-12-31", "2019-07-01 10:30", "2022-02-02"], "date"),
        (["04/03/2021", "31/12/2020", "01/07/2019"], "date"),
        (["1.5", "2.5", "3.25"], "numeric"),  # the shape of 1.5 is no date
        (["red", "green", "blue"], "category"),
    ],
)
def test_text_dates_are_inferred_as_dates_and_numbers_stay_numbers(cells, expected):
    assert infer_type(pd.Series(cells), is_target=False).type == expected


def test_datetime_columns_are_dates_and_a_target_never_is():
    stamps = pd.Series(pd.date_range("2020-01-01", periods=30, freq="17D"))
    assert infer_type(stamps, is_target=False).type == "date"
    assert looks_like_dates(stamps) and not looks_like_dates(pd.Series([2019, 2020, 2021]))
    assert "date" in ENCODERS.names()


def _seasonal(n: int, seed: int = 0) -> pd.DataFrame:
    """Sales that follow the month (a seasonal cycle) and grow over the years, plus noise."""
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2012-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D")
    noise = rng.normal(0, 0.3, n)
    sales = 3 * np.sin(2 * np.pi * (days.month - 1) / 12) + 0.4 * (days.year - 2012) + noise
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "shop": rng.choice(["a", "b"], n), "sales": sales.round(3)})


CONFIG = """\
data:
  source: sales.csv
  target: sales
  batch_size: 32
model:
  layers: [{Linear: 32}, ReLU, {Linear: 32}, ReLU, {Linear: auto}]
loss: MSELoss
optimizer: {type: Adam, lr: 0.01}
train: {epochs: 25}
"""


def test_a_seasonal_target_is_learned_from_the_date_column(tmp_path, cli):
    _seasonal(1500).to_csv(tmp_path / "sales.csv", index=False)
    config = write(tmp_path / "c.yaml", CONFIG)
    with_date = cli("fit", config, "--out", tmp_path / "dated")
    assert with_date.code == 0, with_date.output
    checked = cli("check", config)
    assert "date" in checked.stdout and "day" in checked.stdout
    without = cli("fit", config, "data.inputs=[shop]", "--out", tmp_path / "undated")
    assert without.code == 0, without.output
    r2 = {name: json.loads(cli("evaluate", tmp_path / name, "--json").stdout)["metrics"]["r2"] for name in ("dated", "undated")}
    assert r2["dated"] > 0.8 and r2["dated"] > r2["undated"] + 0.5, r2
    rows = _seasonal(40, seed=1).drop(columns="sales")
    rows.loc[3, "day"] = "soon"  # no date: predicted from the centre, never an error
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predicted = cli("predict", tmp_path / "dated", tmp_path / "rows.csv")
    assert predicted.code == 0, predicted.output
    assert len(pd.read_csv(__import__("io").StringIO(predicted.stdout))) == 40


def test_init_writes_dates_as_dates_and_names_as_ids(tmp_path, cli, monkeypatch):
    table = _seasonal(300)
    table.insert(0, "title", [f"Store {chr(65 + i % 26)}{i}" for i in range(300)])  # a unique name a row
    table.to_csv(tmp_path / "sales.csv", index=False)
    monkeypatch.chdir(tmp_path)
    made = cli("init", "sales.csv", "--target", "sales", "-o", "c.yaml")
    assert made.code == 0, made.output
    text = (tmp_path / "c.yaml").read_text()
    assert "{column: day, type: date}" in text and "id: title" in text
    assert "must be the only input" not in text
    fitted = cli("fit", "c.yaml", "train.epochs=3", "--out", "run")
    assert fitted.code == 0, fitted.output


def test_unique_sentences_are_an_id_beside_table_columns_and_the_input_alone(tmp_path, cli, monkeypatch):
    """A different sentence in every row (longer than a name) cannot join table columns: beside them
    it is the row's id, in init's config and in fit's own inference; alone, it is the text input."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    words = ["red", "blue", "small", "large", "round", "flat", "old", "new"]
    notes = [" ".join([f"note {i}:", *rng.choice(words, 6)]) for i in range(400)]
    table = pd.DataFrame({"x": rng.normal(size=400), "note": notes})
    table["y"] = table["x"] * 2 + rng.normal(0, 0.1, 400)
    table.to_csv("mixed.csv", index=False)
    assert cli("init", "mixed.csv", "--target", "y", "-o", "mixed.yaml").code == 0
    text = (tmp_path / "mixed.yaml").read_text()
    assert "id: note" in text and "must be the only input" not in text
    plain = "data: {source: mixed.csv, target: y}\nmodel: {layers: [{Linear: 8}, ReLU, {Linear: auto}]}\nloss: MSELoss\ntrain: {epochs: 1}\n"
    (tmp_path / "plain.yaml").write_text(plain)
    checked = cli("check", "plain.yaml")
    assert checked.code == 0, checked.output
    assert "column 'note' has a different text in every row and table columns beside it" in " ".join(checked.stderr.split())

    table[["note", "y"]].assign(y=np.where(table["x"] > 0, "up", "down")).to_csv("alone.csv", index=False)
    assert cli("init", "alone.csv", "--target", "y", "-o", "alone.yaml").code == 0
    assert "{column: note, type: text" in (tmp_path / "alone.yaml").read_text()

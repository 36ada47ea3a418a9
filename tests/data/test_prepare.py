import json

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data import prepare as prepare_module
from dltrain.data.encoders import BinaryEncoder, CategoryEncoder, NumericEncoder
from dltrain.data.prepare import prepare, rebuild
from dltrain.data.schema import DataSchema, encode_target
from dltrain.errors import ConfigError, DataError
from dltrain.fitting import check
from dltrain.plan import make_plan
from dltrain.task import INDEX, ZERO_ONE
from tests.conftest import write


@pytest.fixture
def warned(monkeypatch) -> list[str]:
    """What prepare warns about (console.warn prints each message once per process)."""
    found: list[str] = []
    monkeypatch.setattr(prepare_module, "warn", found.append)
    return found


def table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + n),
            "x": rng.normal(10, 3, n).round(3),
            "color": rng.choice(["red", "green", "blue"], n),
            "member": rng.choice(["yes", "no"], n),
            "price": (rng.normal(0, 1, n) * 40 + 200).round(2),
            "label": np.tile(["no", "yes"], n // 2),
            "species": np.tile(["a", "b", "c", "d"], n // 4),
        }
    )


def config(source, target="label", loss="CrossEntropyLoss", **data) -> dict:
    """A config dict; `source=None` when data.split gives the files."""
    data = {"target": target, **data} if source is None else {"source": str(source), "target": target, **data}
    return {"seed": 0, "data": data, "model": {"layers": [{"Linear": 8}, "ReLU", {"Linear": "auto"}]}, "loss": loss, "train": {"monitor": "train_loss"}}


def saved(tmp_path, frame: pd.DataFrame, name: str = "t.csv"):
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_prepare_from_a_plans_data_spec(tmp_path):
    plan = make_plan(config(saved(tmp_path, table()), inputs=["x", "color"]))
    prepared = prepare(plan.data, plan.loss_entry.name, plan.loss_entry.form)
    assert prepared.info["source"] == {"type": "csv", "path": str(tmp_path / "t.csv")}
    assert prepared.info["rows"] == {"train": 32, "val": 4, "test": 4}
    assert prepared.schema.input_columns == ["x", "color"]
    assert prepared.input_spec.shape == (1 + 4,)  # x, and color's 3 classes plus <unk>
    assert prepared.splits["train"].x.shape == (32, 5)


def test_rows_with_a_missing_target_are_dropped_and_counted(tmp_path, warned):
    frame = table()
    frame.loc[3, "label"] = None
    frame["label"] = frame["label"].astype(object)
    frame.loc[30, "label"] = "  "
    prepared = check(config(saved(tmp_path, frame))).data
    assert prepared.info["dropped"] == {"missing_target": 2, "unseen_target": 0, "unreadable": 0}
    assert sum(prepared.info["rows"].values()) == 38
    used = np.concatenate([s.rows for s in prepared.splits.values()])
    assert 3 not in used and 30 not in used
    assert sorted(used.tolist()) == [i for i in range(40) if i not in (3, 30)]
    target_report = next(r for r in prepared.columns if r.role == "target")
    assert (target_report.name, target_report.missing) == ("label", 2)
    assert f"2 row(s) of {tmp_path / 't.csv'} have no value in target column 'label': dropped" in warned


def test_encoders_are_fitted_on_the_training_rows_only(tmp_path):
    frame = table()
    prepared = check(config(saved(tmp_path, frame), inputs=["x", "member"])).data
    train = frame.iloc[prepared.splits["train"].rows]
    x, member = prepared.schema.inputs
    assert isinstance(x, NumericEncoder) and isinstance(member, BinaryEncoder)
    assert x.mean == pytest.approx(train["x"].mean())
    assert x.std == pytest.approx(train["x"].std(ddof=0))
    assert abs(frame["x"].mean() - train["x"].mean()) > 1e-3  # so that the test can tell them apart
    assert member.rate == pytest.approx((train["member"] == "yes").mean())
    encoded = prepared.splits["train"].x[:, 0]
    assert encoded.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert encoded.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_a_category_seen_only_outside_train_is_unknown(tmp_path):
    frame = table(n=12)
    frame["part"] = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    frame.loc[10:, "color"] = "violet"
    frame.loc[:7, "color"] = ["red", "green"] * 4
    prepared = check(config(saved(tmp_path, frame), inputs=["color"], split={"column": "part"})).data
    (color,) = prepared.schema.inputs
    assert isinstance(color, CategoryEncoder) and color.classes == ["green", "red"]
    assert prepared.splits["test"].x.tolist() == [[0, 0, 1], [0, 0, 1]]


def test_missing_input_values_are_filled_and_counted(tmp_path):
    frame = table()
    frame.loc[[0, 1, 2], "x"] = np.nan
    prepared = check(config(saved(tmp_path, frame), inputs=["x"])).data
    report = next(r for r in prepared.columns if r.name == "x")
    assert (report.role, report.type, report.missing) == ("input", "numeric", 3)
    by_row = {
        int(row): value for split in prepared.splits.values() for row, value in zip(split.rows, split.x[:, 0].tolist())
    }
    assert [by_row[0], by_row[1], by_row[2]] == [0.0, 0.0, 0.0]  # the training mean, standardized
    assert len(by_row) == 40 and not any(np.isnan(list(by_row.values())))


def test_split_column(tmp_path):
    frame = table(n=20)
    frame["part"] = (["train"] * 6 + ["Val", "validation"] + ["TEST", "test"]) * 2
    prepared = check(config(saved(tmp_path, frame), split={"column": "part"})).data
    assert {name: s.rows.tolist() for name, s in prepared.splits.items()} == {
        "train": [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15],
        "val": [6, 7, 16, 17],
        "test": [8, 9, 18, 19],
    }
    assert "part" not in prepared.schema.input_columns
    assert ("part", "split") in [(r.name, r.role) for r in prepared.columns]


def test_split_column_with_a_bad_value_cites_the_config_key(tmp_path):
    frame = table(n=20)
    frame["part"] = ["train"] * 18 + ["holdout"] * 2
    with pytest.raises(ConfigError) as error:
        check(config(saved(tmp_path, frame), split={"column": "part"}))
    (problem,) = error.value.problems
    assert problem.key == "data.split.column"
    assert "split column 'part' must hold train, val or test; 2 row(s) hold 'holdout'" in problem.message


def test_split_files(tmp_path):
    frame = table(n=40)
    saved(tmp_path, frame.iloc[:24], "a.csv")
    saved(tmp_path, frame.iloc[24:32], "b.csv")
    saved(tmp_path, frame.iloc[32:], "c.csv")
    split = {"train": str(tmp_path / "a.csv"), "val": str(tmp_path / "b.csv"), "test": str(tmp_path / "c.csv")}
    built = check(config(None, split=split, inputs=["x", "color"]))
    prepared = built.data
    assert {name: s.rows.tolist() for name, s in prepared.splits.items()} == {
        "train": list(range(24)),
        "val": list(range(24, 32)),
        "test": list(range(32, 40)),
    }
    assert prepared.info["source"] == {"files": {name: {"type": "csv", "path": path} for name, path in split.items()}}
    assert prepared.schema.inputs[0].mean == pytest.approx(frame["x"].iloc[:24].mean())


def test_split_files_must_share_columns(tmp_path):
    frame = table(n=20)
    saved(tmp_path, frame.iloc[:16], "a.csv")
    saved(tmp_path, frame.iloc[16:].drop(columns="color"), "b.csv")
    with pytest.raises(ConfigError) as error:
        check(config(None, split={"train": str(tmp_path / "a.csv"), "val": str(tmp_path / "b.csv")}))
    (problem,) = error.value.problems
    assert problem.key == "data.split.val"
    assert "differ from the train file's" in problem.message


def test_id_like_column_is_not_an_input_by_inference(tmp_path, warned):
    prepared = check(config(saved(tmp_path, table()))).data
    assert prepared.schema.input_columns == ["x", "color", "member", "price", "species"]
    assert ("id", "ignored") in [(r.name, r.role) for r in prepared.columns]
    assert any(w.startswith("column 'id' has a different value in every row, so it looks like an id") for w in warned)


def test_id_column_given_is_kept_out_of_the_inputs(tmp_path):
    prepared = check(config(saved(tmp_path, table()), id="id")).data
    assert "id" not in prepared.schema.input_columns
    assert prepared.schema.id == "id"
    listed = check(config(saved(tmp_path, table()), inputs=["id", "x"])).data
    assert listed.schema.input_columns == ["id", "x"]  # listed, it is used


def test_bce_target_is_float_n_by_1(tmp_path):
    frame = table()
    parts = check(config(saved(tmp_path, frame), loss="BCEWithLogitsLoss", inputs=["x"]))
    prepared = parts.data
    assert parts.task.classes == ("no", "yes")
    assert parts.task.output_size == 1
    for split in prepared.splits.values():
        assert split.y.dtype == torch.float32
        assert split.y.shape == (len(split.rows), 1)
        expected = (frame["label"].iloc[split.rows] == "yes").astype(float).tolist()
        assert split.y.flatten().tolist() == expected


def test_bce_target_honours_positive(tmp_path):
    frame = table()
    target = {"column": "label", "positive": "no"}
    parts = check(config(saved(tmp_path, frame), target=target, loss="bce", inputs=["x"]))
    prepared = parts.data
    assert parts.task.classes == ("yes", "no")
    train = prepared.splits["train"]
    assert train.y.flatten().tolist() == (frame["label"].iloc[train.rows] == "no").astype(float).tolist()


def test_cross_entropy_target_is_long_n(tmp_path):
    frame = table()
    built = check(config(saved(tmp_path, frame), target="species", inputs=["x"]))
    parts = built
    prepared = parts.data
    assert parts.task.classes == ("a", "b", "c", "d")
    assert parts.task.output_size == 4
    assert built.model[-1].out_features == 4
    for split in prepared.splits.values():
        assert split.y.dtype == torch.long
        assert split.y.shape == (len(split.rows),)
        expected = frame["species"].iloc[split.rows].map({"a": 0, "b": 1, "c": 2, "d": 3}).tolist()
        assert split.y.tolist() == expected


def test_binary_target_with_cross_entropy_has_two_classes(tmp_path):
    parts = check(config(saved(tmp_path, table()), target="label", inputs=["x"]))
    prepared = parts.data
    assert isinstance(prepared.schema.target, CategoryEncoder)
    assert parts.task.output_size == 2
    assert prepared.splits["train"].y.dtype == torch.long


def test_numeric_target_is_standardized_and_decoded(tmp_path):
    frame = table()
    parts = check(config(saved(tmp_path, frame), target="price", loss="mse", inputs=["x"]))
    prepared = parts.data
    train = prepared.splits["train"]
    assert train.y.dtype == torch.float32 and train.y.shape == (len(train.rows), 1)
    assert train.y.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train.y.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    task = parts.task
    assert (task.target_type, task.output_size) == ("numeric", 1)
    assert task.mean == pytest.approx(frame["price"].iloc[train.rows].mean())
    for split in prepared.splits.values():
        original = torch.tensor(frame["price"].iloc[split.rows].to_numpy())
        assert torch.allclose(task.values(split.y), original, atol=1e-3)


def test_encode_target_marks_unknown_classes():
    encoder = CategoryEncoder("species", ["a", "b"])
    y, known = encode_target(encoder, pd.Series(["b", "z", None, "a"]), INDEX)
    assert y.tolist() == [1, 0, 0, 0] and known.tolist() == [True, False, False, True]
    y, known = encode_target(
        BinaryEncoder("label", ["no", "yes"]), pd.Series(["yes", "no"]), ZERO_ONE
    )
    assert y.tolist() == [[1.0], [0.0]] and known.tolist() == [True, True]


@pytest.mark.parametrize(
    "target, loss, fragment",
    [
        ("price", "CrossEntropyLoss", "CrossEntropyLoss does not fit: target 'price' is numeric"),
        ("species", "BCEWithLogitsLoss", "use CrossEntropyLoss (cross_entropy) for 4"),
        ("species", "mse", "MSELoss does not fit: target 'species' is category"),
    ],
)
def test_target_type_must_fit_the_loss(tmp_path, target, loss, fragment):
    with pytest.raises(ConfigError) as error:
        check(config(saved(tmp_path, table()), target=target, loss=loss, inputs=["x"]))
    (problem,) = error.value.problems
    assert problem.key == "loss"
    assert fragment in problem.message


def test_unknown_target_column_suggests_the_name(tmp_path):
    with pytest.raises(ConfigError) as error:
        check(config(saved(tmp_path, table()), target="spcies"))
    (problem,) = error.value.problems
    assert problem.key == "data.target"
    assert problem.message.startswith(f"column 'spcies' is not in {tmp_path / 't.csv'}. Did you mean 'species'?")


def test_temp_yaml_config(tmp_path):
    saved(tmp_path, table())
    path = write(
        tmp_path / "c.yaml",
        "data:\n  source: t.csv\n  target: species\n  inputs: [x, {column: member, type: category}]\n"
        "model:\n  layers: [{Linear: auto}]\nloss: cross_entropy\n",
    )
    prepared = check(path).data
    assert [type(e) for e in prepared.schema.inputs] == [NumericEncoder, CategoryEncoder]
    assert prepared.input_spec.shape == (1 + 3,)


def test_rebuild_encodes_the_splits_exactly_as_prepare(tmp_path):
    built = check(config(saved(tmp_path, table()), target="species"))
    prepared = built.data
    schema = DataSchema.from_dict(json.loads(json.dumps(prepared.schema.to_dict())))
    info = json.loads(json.dumps(prepared.info, default=lambda v: v.tolist()))  # as data.json holds it
    again = rebuild(info, schema, built.plan.loss_entry.form, ("train", "val", "test"))
    for name, split in prepared.splits.items():
        assert torch.equal(again[name].x, split.x)
        assert torch.equal(again[name].y, split.y)
        assert again[name].rows.tolist() == split.rows.tolist()


def test_rebuild_with_fewer_rows_says_the_data_changed(tmp_path):
    built = check(config(saved(tmp_path, table()), target="species"))
    saved(tmp_path, table().iloc[:10])
    with pytest.raises(DataError, match=f"but {tmp_path / 't.csv'} now has 10 rows: the data changed"):
        rebuild(built.data.info, built.data.schema, built.plan.loss_entry.form, ("train",))


def test_target_class_unseen_in_training_is_dropped_and_counted(tmp_path, warned):
    frame = table(n=20)
    frame["part"] = ["train"] * 16 + ["test"] * 4
    frame.loc[16:17, "species"] = "e"
    parts = check(config(saved(tmp_path, frame), target="species", inputs=["x"], split={"column": "part"}))
    prepared = parts.data
    assert parts.task.classes == ("a", "b", "c", "d")
    assert prepared.info["dropped"] == {"missing_target": 0, "unseen_target": 2, "unreadable": 0}
    assert prepared.splits["test"].rows.tolist() == [18, 19]
    assert "2 row(s) of the test split have target values never seen in training (e): dropped" in warned


def test_text_in_a_numeric_input_names_the_column_and_file_row(tmp_path):
    frame = table(n=20).astype({"x": object})
    frame.loc[13, "x"] = "n/a?"
    frame["part"] = ["train"] * 16 + ["val"] * 4
    with pytest.raises(DataError) as error:
        check(config(saved(tmp_path, frame), inputs=[{"column": "x", "type": "numeric"}], split={"column": "part"}))
    assert "column 'x' is numeric, but 1 of its 16 filled rows hold text ('n/a?'), the first in data row 14" in str(error.value)

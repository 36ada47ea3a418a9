import numpy as np
import pandas as pd
import pytest

from dltrain.data import split as split_module
from dltrain.data.split import split_by_column, split_by_ratios
from dltrain.errors import DataError

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}


@pytest.fixture
def warned(monkeypatch) -> list[str]:
    """The warnings the split module gives (console.warn prints each message once per process)."""
    found: list[str] = []
    monkeypatch.setattr(split_module, "warn", found.append)
    return found


def classes(counts: dict[str, int], seed: int = 0) -> pd.Series:
    """A class label per row, shuffled so that classes are not in blocks."""
    labels = np.concatenate([[name] * n for name, n in counts.items()])
    return pd.Series(np.random.default_rng(seed).permutation(labels))


def assert_partition(splits: dict[str, np.ndarray], n_rows: int) -> None:
    every = np.concatenate(list(splits.values()))
    assert len(every) == n_rows, "a row is in two splits, or in none"
    assert sorted(every.tolist()) == list(range(n_rows))
    for rows in splits.values():
        assert rows.tolist() == sorted(rows.tolist())


def test_stratified_split_keeps_class_proportions(warned):
    strata = classes({"a": 50, "b": 30, "c": 20})
    splits = split_by_ratios(100, RATIOS, seed=0, strata=strata)
    assert list(splits) == ["train", "val", "test"]
    assert_partition(splits, 100)
    for name, ratio in RATIOS.items():
        counts = strata[splits[name]].value_counts()
        for label, total in {"a": 50, "b": 30, "c": 20}.items():
            assert abs(counts.get(label, 0) - total * ratio) <= 1, (name, label)
    # largest remainder; a tie goes where the split's total lags: a 35/8/7, then b 21/4/5, c 14/3/3
    assert strata[splits["train"]].value_counts().to_dict() == {"a": 35, "b": 21, "c": 14}
    assert strata[splits["val"]].value_counts().to_dict() == {"a": 8, "b": 4, "c": 3}
    assert strata[splits["test"]].value_counts().to_dict() == {"a": 7, "b": 5, "c": 3}
    assert warned == []


def test_two_classes_split_exactly():
    strata = classes({"no": 60, "yes": 40})
    splits = split_by_ratios(100, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3, strata=strata)
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 80, "val": 10, "test": 10}
    assert strata[splits["val"]].value_counts().to_dict() == {"no": 6, "yes": 4}
    assert strata[splits["test"]].value_counts().to_dict() == {"no": 6, "yes": 4}


@pytest.mark.parametrize("n_rows", [1, 7, 10, 99, 101])
def test_unstratified_sizes_are_within_one_row_of_the_ratios(n_rows):
    splits = split_by_ratios(n_rows, RATIOS, seed=0)
    assert_partition(splits, n_rows)
    for name, ratio in RATIOS.items():
        assert abs(len(splits.get(name, [])) - n_rows * ratio) <= 1, name


@pytest.mark.parametrize(
    "n_rows, ratios, sizes",
    [
        (10, {"train": 0.5, "val": 0.25, "test": 0.25}, {"train": 5, "val": 3, "test": 2}),  # a tie: val first
        (3, {"train": 0.6, "val": 0.2, "test": 0.2}, {"train": 2, "val": 1, "test": 0}),  # .8 beats .6
        (7, {"train": 0.7, "val": 0.3}, {"train": 5, "val": 2}),  # 4.9 and 2.1
    ],
)
def test_largest_remainder(n_rows, ratios, sizes):
    splits = split_by_ratios(n_rows, ratios, seed=0)
    assert {name: len(rows) for name, rows in splits.items()} == sizes


def test_stratified_totals_stay_within_one_row_of_the_ratios():
    strata = classes({f"c{i}": 10 for i in range(10)})
    splits = split_by_ratios(100, RATIOS, seed=0, strata=strata)
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 70, "val": 15, "test": 15}


def test_split_is_deterministic_under_a_seed_and_changes_with_it():
    strata = classes({"a": 40, "b": 40})
    first = split_by_ratios(80, RATIOS, seed=7, strata=strata)
    again = split_by_ratios(80, RATIOS, seed=7, strata=strata)
    other = split_by_ratios(80, RATIOS, seed=8, strata=strata)
    for name in RATIOS:
        assert np.array_equal(first[name], again[name])
    assert not all(np.array_equal(first[name], other[name]) for name in RATIOS)
    assert {k: len(v) for k, v in other.items()} == {k: len(v) for k, v in first.items()}


def test_zero_ratio_means_no_split():
    splits = split_by_ratios(20, {"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert list(splits) == ["train", "val"]
    assert (len(splits["train"]), len(splits["val"])) == (16, 4)


def test_tiny_class_goes_to_train_with_a_warning(warned):
    strata = classes({"a": 40, "b": 40, "rare": 2})
    splits = split_by_ratios(82, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, strata=strata)
    assert_partition(splits, 82)
    rare = set(np.flatnonzero(strata == "rare").tolist())
    assert rare <= set(splits["train"].tolist())
    assert not rare & set(splits["val"].tolist()) and not rare & set(splits["test"].tolist())
    assert len(warned) == 1
    assert warned[0].startswith(
        "class 'rare' (2 rows) too small to appear in every split: its rows went to train first"
    )


def test_split_by_column_accepts_any_case_and_validation():
    values = pd.Series(["train", "Val", " TEST ", "validation", "Train", "valid", "test"])
    splits = split_by_column(values, "part")
    assert {name: rows.tolist() for name, rows in splits.items()} == {
        "train": [0, 4],
        "val": [1, 3, 5],
        "test": [2, 6],
    }


def test_split_by_column_leaves_out_empty_splits():
    splits = split_by_column(pd.Series(["train", "test", "train"]), "part")
    assert {name: rows.tolist() for name, rows in splits.items()} == {"train": [0, 2], "test": [1]}


@pytest.mark.parametrize(
    "values, fragment",
    [
        (["train", "dev", "test", "dev"], "2 row(s) hold 'dev'"),
        (["train", None, "val"], "1 row(s) hold"),
        (["train", "training", "valdation"], "2 row(s) hold 'training', 'valdation'"),
    ],
)
def test_split_by_column_rejects_other_values(values, fragment):
    with pytest.raises(DataError) as error:
        split_by_column(pd.Series(values), "fold")
    message = str(error.value)
    assert message.startswith("split column 'fold' must hold train, val or test; ")
    assert fragment in message
    assert error.value.key == ("data", "split", "column")


def test_split_by_column_needs_training_rows():
    with pytest.raises(DataError, match="split column 'fold' marks no row as train"):
        split_by_column(pd.Series(["val", "test"]), "fold")

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data.encoders import (
    UNKNOWN,
    BinaryEncoder,
    CategoryEncoder,
    NumericEncoder,
    check_column_options,
    encoder_from_dict,
    fit_encoder,
    infer_type,
    is_missing,
    keys,
    looks_like_id,
)
from dltrain.errors import DataError


def csv_column(*cells: str) -> pd.Series:
    """A column as read_table reads it from a csv file: one cell per row, "" for a blank cell."""
    text = "v,row\n" + "".join(f"{cell},{n}\n" for n, cell in enumerate(cells))
    return pd.read_csv(io.StringIO(text))["v"]


# numeric


def test_numeric_standardizes_with_the_training_mean_and_std():
    encoder = NumericEncoder.fit("x", pd.Series([1.0, 2.0, 3.0, 6.0]), {})
    assert encoder.mean == 3.0
    assert encoder.std == pytest.approx(np.sqrt(3.5))  # population std: ((4 + 1 + 0 + 9) / 4) ** 0.5
    out = encoder.transform(pd.Series([3.0, 6.0, 3.0 - np.sqrt(3.5)]))
    assert out.dtype == torch.float32 and out.shape == (3, 1)
    assert torch.allclose(out, torch.tensor([[0.0], [3 / np.sqrt(3.5)], [-1.0]], dtype=torch.float32))


def test_numeric_fills_missing_values_with_the_training_mean():
    encoder = NumericEncoder.fit("x", pd.Series([2.0, None, 4.0]), {})
    assert (encoder.mean, encoder.std) == (3.0, 1.0)  # the missing value counts in neither
    assert encoder.transform(pd.Series([None, 5.0, np.nan])).flatten().tolist() == [0.0, 2.0, 0.0]
    assert encoder.numbers(csv_column("4", "", "2")).tolist() == [1.0, 0.0, -1.0]


def test_numeric_reads_numbers_written_as_text_and_blank_cells():
    encoder = NumericEncoder.fit("x", pd.Series(["1", " 3", "", None], dtype=object), {})
    assert (encoder.mean, encoder.std) == (2.0, 1.0)


def test_numeric_constant_column_keeps_std_one():
    encoder = NumericEncoder.fit("x", pd.Series([5, 5, 5]), {})
    assert (encoder.mean, encoder.std) == (5.0, 1.0)
    assert encoder.transform(pd.Series([5, 7])).flatten().tolist() == [0.0, 2.0]


def test_numeric_decode_inverts_standardization():
    encoder = NumericEncoder.fit("price", pd.Series([100.0, 250.0, 175.5]), {})
    values = torch.tensor([100.0, 250.0, 175.5, 12.25], dtype=torch.float64)
    assert torch.allclose(encoder.decode(encoder.numbers(pd.Series(values.numpy()))), values)


def test_numeric_column_with_text_names_the_column_and_row():
    with pytest.raises(DataError) as error:
        NumericEncoder.fit("age", csv_column("31", "40", "forty", "27", "n.a."), {})
    assert str(error.value) == (
        "column 'age' is numeric, but 2 of its 5 filled rows hold text ('forty', 'n.a.'), the first in data row 3: "
        "give it type category, or clean those rows"
    )


def test_a_few_text_cells_in_numbers_are_missing_values_with_a_warning(capsys):
    # 1 cell of text in 40: missing (filled with the mean), said once; '?' and '-' are missing markers
    cells = [str(v) for v in range(1, 39)] + ["unknown", "?"]
    encoder = NumericEncoder.fit("age", csv_column(*cells), {})
    assert encoder.mean == pytest.approx(19.5)
    assert "column 'age' is numeric: 1 cell(s) of text ('unknown') are read as missing values" in capsys.readouterr().err
    # new data: any number of text cells become the mean, never an error
    values = encoder.transform(pd.Series(["?", "n/a!", "19.5", "1,234.5"], dtype=object))
    assert values[:3].flatten().tolist() == [0.0, 0.0, 0.0]
    assert values[3].item() == pytest.approx((1234.5 - 19.5) / encoder.std)


def test_numbers_written_as_text_are_inferred_numeric():
    # '?' for unknown (UCI tables) and thousands separators: numbers, not a category per value
    ages = csv_column(*[str(20 + v % 60) for v in range(200)], "?", "?")
    assert infer_type(ages, is_target=False).type == "numeric"
    money = pd.Series([f"{v:,}.50" for v in range(1000, 200000, 1000)], dtype=object)
    assert infer_type(money, is_target=False).type == "numeric"
    assert NumericEncoder.fit("m", money, {}).mean == pytest.approx(100000.5)
    assert money.str.contains(",").all()
    # codes written as text in a target: classes
    assert infer_type(csv_column(*"1 2 3 1 2 3".split()), is_target=True).type == "category"
    # words stay categories
    assert infer_type(csv_column("red", "green", "blue", "?"), is_target=False).type == "category"


def test_true_false_and_one_zero_match_across_files():
    # a CSV column true/false with gaps is trained on; JSON gives the same column as 1.0/0.0/NaN
    encoder = BinaryEncoder.fit("member", pd.Series([True, False, None, True], dtype=object), {})
    assert encoder.transform(pd.Series([1.0, 0.0, np.nan])).flatten().tolist() == pytest.approx([1.0, 0.0, 2 / 3])
    assert encoder.unseen(pd.Series([1.0, "maybe", None])) == (1, ["maybe"])


def test_numeric_text_row_is_counted_in_the_source_table():
    # the training rows keep their labels in the whole table: row 8 is the file's 8th data row
    series = pd.Series(["1", "2", "x"], index=[0, 4, 7])
    with pytest.raises(DataError, match="the first in data row 8"):
        NumericEncoder.fit("n", series, {})


# binary


def test_binary_default_positive_is_the_second_in_sorted_order():
    encoder = BinaryEncoder.fit("smoker", pd.Series(["yes", "no", "yes", "yes"]), {})
    assert encoder.classes == ["no", "yes"]
    assert encoder.transform(pd.Series(["no", "yes"])).flatten().tolist() == [0.0, 1.0]


def test_binary_positive_option_and_missing_becomes_training_rate():
    train = pd.Series(["no", "yes", "yes", None, "yes"])
    encoder = BinaryEncoder.fit("smoker", train, {"positive": "no"})
    assert encoder.classes == ["yes", "no"]
    assert encoder.rate == 0.25  # 1 "no" of 4 known values; the missing row counts in neither
    out = encoder.transform(pd.Series(["no", "yes", None, "", "maybe"]))
    assert out.shape == (5, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == [1.0, 0.0, 0.25, 0.25, 0.25]


def test_binary_positive_number_matches_numbers():
    encoder = BinaryEncoder.fit("label", pd.Series([0, 1, 1, 0, 0]), {"positive": 0})
    assert encoder.classes == ["1", "0"]
    assert encoder.rate == pytest.approx(0.6)
    assert encoder.transform(pd.Series([0.0, 1.0])).flatten().tolist() == [1.0, 0.0]


def test_binary_positive_that_is_not_a_value():
    with pytest.raises(DataError) as error:
        BinaryEncoder.fit("smoker", pd.Series(["no", "yes"]), {"positive": "Yes"})
    assert str(error.value) == "column 'smoker': positive value 'Yes' is not among its values (no, yes)"


def test_binary_with_three_values_says_use_category():
    with pytest.raises(DataError) as error:
        BinaryEncoder.fit("size", pd.Series(["s", "m", "l", "m"]), {})
    assert (
        str(error.value)
        == "column 'size' is binary, but its training rows hold 3 values (l, m, s): give it type category"
    )


def plain(value) -> bool:
    """Only what JSON and a safe checkpoint load hold: str, float, int, bool, None, lists and dicts of them."""
    if isinstance(value, dict):
        return all(type(k) is str and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (str, float, int, bool)


@pytest.mark.parametrize(
    "encoder_type, train, options, new",
    [
        ("numeric", pd.Series(np.array([3, 1, 4, 1, 5], dtype=np.int64)), {}, pd.Series([2, None, 9])),
        ("numeric", pd.Series(np.array([0.5, 1.5], dtype=np.float32)), {}, pd.Series([1.0, 2.0])),
        ("binary", pd.Series([True, False, True]), {}, pd.Series([False, True])),
        ("binary", pd.Series(["b", "a", None, "a"]), {"positive": "a"}, pd.Series(["a", None, "b", "c"])),
        ("category", pd.Series(np.array([30, 10, 20, 10], dtype=np.int64)), {}, pd.Series([10.0, 20, 99, None])),
        ("category", pd.Series(["red", "green", None, "blue"]), {}, pd.Series(["blue", "pink", None])),
    ],
)
def test_to_dict_from_dict_round_trip_is_plain_and_identical(encoder_type, train, options, new):
    encoder = fit_encoder("col", encoder_type, train, options)
    saved = encoder.to_dict()
    assert plain(saved), saved
    assert saved["type"] == encoder_type and saved["column"] == "col"
    loaded = encoder_from_dict(json.loads(json.dumps(saved)))
    assert type(loaded) is type(encoder)
    assert loaded == encoder
    assert torch.equal(loaded.transform(new), encoder.transform(new))
    assert torch.equal(loaded.transform(train), encoder.transform(train))


# category


def test_category_one_hot_with_unk_for_unseen_and_missing():
    encoder = CategoryEncoder.fit("color", pd.Series(["red", "green", "red", None, " blue "]), {})
    assert encoder.classes == ["blue", "green", "red"]
    assert encoder.width == 4
    out = encoder.transform(pd.Series(["red", "pink", None, "blue", ""]))
    assert out.dtype == torch.float32
    assert out.tolist() == [
        [0, 0, 1, 0],
        [0, 0, 0, 1],  # unseen -> <unk>
        [0, 0, 0, 1],  # missing -> <unk>
        [1, 0, 0, 0],
        [0, 0, 0, 1],  # empty text is missing
    ]
    assert encoder.codes(pd.Series(["green", "pink", None])).tolist() == [1, -1, -1]
    assert UNKNOWN not in encoder.classes


def test_category_sorts_numbers_as_numbers():
    encoder = CategoryEncoder.fit("grade", pd.Series([10, 2, 1, 2]), {})
    assert encoder.classes == ["1", "2", "10"]
    mixed = CategoryEncoder.fit("code", pd.Series(["b", "10", "9", "a"]), {})
    assert mixed.classes == ["9", "10", "a", "b"]


# keys


def test_keys_treats_3_and_3_0_as_one_value():
    assert keys(pd.Series([3, 3.0, 2.5, None])).tolist() == ["3", "3", "2.5", pd.NA]
    assert keys(pd.Series(np.array([3], dtype=np.int64))).tolist() == keys(pd.Series([3.0])).tolist() == ["3"]
    assert keys(pd.Series(["3", " 3 "])).tolist() == ["3", "3"]
    encoder = CategoryEncoder.fit("n", pd.Series([1, 3, 3]), {})
    assert encoder.codes(pd.Series([3.0, 1.0])).tolist() == [1, 0]
    assert encoder.codes(pd.Series(["3", "1"])).tolist() == [1, 0]


def test_keys_of_text_booleans_and_missing():
    assert keys(pd.Series([True, False])).tolist() == ["true", "false"]
    assert keys(pd.Series(["a", "", "  ", None])).tolist() == ["a", pd.NA, pd.NA, pd.NA]
    assert is_missing(pd.Series(["a", " ", None])).tolist() == [False, True, True]
    assert is_missing(pd.Series([1.0, np.nan])).tolist() == [False, True]


def test_keys_matches_numbers_read_as_text():
    # a csv column with one word in it is read as text: 1.0 stays "1.0"; a file without the word reads floats
    train = csv_column("1.0", "unknown", "2.0")
    encoder = CategoryEncoder.fit("level", train, {})
    assert encoder.codes(csv_column("1.0", "2.0")).tolist() == [0, 1]


def test_keys_matches_booleans_with_a_missing_value():
    encoder = BinaryEncoder.fit("member", csv_column("true", "false", "true"), {})
    with_blank = csv_column("true", "", "false")
    assert encoder.transform(with_blank).flatten().tolist() == pytest.approx([1.0, encoder.rate, 0.0])


# infer_type


@pytest.mark.parametrize(
    "values, is_target, expected",
    [
        ([True, False, True], False, "binary"),
        ([0.5, 1.5, 0.5, None], False, "binary"),
        (["yes", "no", None, "no"], True, "binary"),
        (list(range(20)) * 2, True, "category"),
        ([1.0, 2.0, 3.0, 2.0], True, "category"),
        (list(range(21)) * 2, True, "numeric"),
        ([1.5, 2.5, 3.5], True, "numeric"),
        ([1, 2, 3, 4, 5], False, "numeric"),
        (["a", "b", "c", None], False, "category"),
        ([f"v{i}" for i in range(50)], False, "category"),
        ([f"word {i} here" for i in range(51)], False, "text"),
        ([f"code{i}" for i in range(51)], False, "category"),
    ],
    ids=[
        "bool",
        "two-numbers",
        "two-strings",
        "int-target-20-values",
        "whole-float-target",
        "int-target-21-values",
        "fractional-target",
        "int-input",
        "strings",
        "50-strings",
        "free-text",
        "51-words-without-spaces",
    ],
)
def test_infer_type(values, is_target, expected):
    assert infer_type(pd.Series(values), is_target=is_target).type == expected


def test_infer_type_says_why():
    assert infer_type(pd.Series(list(range(20))), is_target=True).reason == "whole numbers, 20 distinct (at most 20)"
    assert infer_type(pd.Series(["a", "b", "c"]), is_target=False).reason == "text, 3 distinct values"


# looks_like_id


@pytest.mark.parametrize(
    "values, expected",
    [
        (list(range(100, 120)), True),
        ([f"row-{i}" for i in range(25)], True),
        ([float(i) for i in range(25)], True),
        (list(range(19)), False),  # too few rows to tell
        (list(range(24)) + [0], False),  # a repeated value
        (list(range(24)) + [None], True),  # a gap in an id column (1 in 25)
        (list(range(20)) + [None] * 5, False),  # too many gaps for an id
        ([i + 0.5 for i in range(25)], False),  # measurements, not ids
        ([True, False] * 15, False),
    ],
    ids=["ints", "strings", "whole-floats", "19-rows", "repeat", "gap", "gaps", "fractions", "bools"],
)
def test_looks_like_id(values, expected):
    assert looks_like_id(pd.Series(values)) is expected


# options


def test_check_column_options():
    assert check_column_options("binary", {"positive": "yes"}) is None
    assert check_column_options(None, {"positive": 1}) is None
    assert (
        check_column_options("category", {"positive": 1}) == "type category has no option 'positive'. Its options: none"
    )
    assert check_column_options("numeric", {"positive": 1}) == "type numeric has no option 'positive'. Its options: transform, encoding"
    assert check_column_options("catgory", {}).startswith(
        "unknown column type 'catgory'. Did you mean 'category'? Known types: "
    )
    assert check_column_options(None, {"postive": 1}).startswith(
        "unknown column option 'postive'. Did you mean 'positive'? Options: "
    )


def test_fit_encoder_rejects_types_it_cannot_encode_and_unknown_options():
    with pytest.raises(DataError, match="column .review. holds hologram values, which dltrain cannot encode yet"):
        fit_encoder("review", "hologram", pd.Series(["a b"]), {})
    with pytest.raises(DataError, match=r"column 'c' is category, which has no option positive \(its options: none\)"):
        fit_encoder("c", "category", pd.Series(["a", "b"]), {"positive": "a"})


def test_keys_and_number_parsing_per_distinct_value_match_cell_by_cell():
    from dltrain.data.encoders import _parse_text_numbers, _text_keys, parse_numbers

    cells = [" 3.0", "3", "true", "TRUE", "?", None, "1,234", "x", "", "  cat ", 7, 3.5, "nan"]
    series = pd.Series(cells * 500, dtype=object)  # many rows, few distinct values: the fast path
    assert keys(series).tolist() == _text_keys(series).tolist()
    values, bad = parse_numbers(series)
    slow_values, slow_bad = _parse_text_numbers(series)
    assert np.allclose(values.to_numpy(), slow_values.to_numpy(), equal_nan=True)
    assert bad.tolist() == slow_bad.tolist() and values.index.equals(series.index)
    assert keys(series).iloc[:3].tolist() == ["3", "3", "true"]
    lists = pd.Series([[1, 2], [3]] * 10, dtype=object)  # unhashable cells take the cell-by-cell path
    assert len(keys(lists)) == 20


def test_inferring_numbers_skips_the_work_a_column_does_not_need():
    rng = np.random.default_rng(0)
    assert infer_type(pd.Series(rng.standard_normal(10_000)), is_target=False).type == "numeric"
    assert infer_type(pd.Series([0.0, 1.0] * 50 + [np.nan]), is_target=False).type == "binary"
    assert infer_type(pd.Series([5.0] * 100), is_target=False).type == "numeric"
    assert infer_type(pd.Series(rng.integers(0, 4, 1000).astype(float)), is_target=True).type == "category"
    assert looks_like_id(pd.Series(np.arange(1000, dtype=float)))
    assert not looks_like_id(pd.Series(np.arange(1000) + 0.5))
    assert not looks_like_id(pd.Series(np.r_[np.arange(1500), [0.25]]))  # a fraction after the first thousand rows

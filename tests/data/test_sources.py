import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from dltrain.data.sources import ResolvedSource, fingerprint, read_table, resolve_source
from dltrain.errors import DataError
from tests.conftest import write

TABLE = pd.DataFrame({"name": ["ant", "bee", "cat"], "count": [1, 2, 3], "score": [0.5, 1.25, -2.0]})
CSV = "name,count,score\nant,1,0.5\nbee,2,1.25\ncat,3,-2.0\n"
RECORDS = [
    '{"name": "ant", "count": 1, "score": 0.5}',
    '{"name": "bee", "count": 2, "score": 1.25}',
    '{"name": "cat", "count": 3, "score": -2.0}',
]


def resolver(base: Path):
    """What `LoadedConfig.resolve_path` does for a config in `base`, without the config."""
    return lambda value, key: (base / value).resolve()


def sqlite_db(path: Path, tables=("items",)) -> Path:
    connection = sqlite3.connect(path)
    for table in tables:
        connection.execute(f"create table {table} (name text, count integer, score real)")
    connection.executemany(f"insert into {tables[0]} values (?, ?, ?)", TABLE.itertuples(index=False))
    connection.commit()
    connection.close()
    return path


def _csv(tmp_path):
    write(tmp_path / "t.csv", CSV)
    return "t.csv"


def _tsv(tmp_path):
    write(tmp_path / "t.tsv", CSV.replace(",", "\t"))
    return "t.tsv"


def _parquet(tmp_path):
    TABLE.to_parquet(tmp_path / "t.parquet")
    return "t.parquet"


def _json_records(tmp_path):
    write(tmp_path / "t.json", "[" + ",\n".join(RECORDS) + "]\n")
    return "t.json"


def _json_lines_named_json(tmp_path):
    write(tmp_path / "t.json", "\n".join(RECORDS) + "\n")
    return "t.json"


def _jsonl(tmp_path):
    write(tmp_path / "t.jsonl", "\n".join(RECORDS) + "\n")
    return "t.jsonl"


def _sql_url(tmp_path):
    sqlite_db(tmp_path / "t.db")
    return {"type": "sql", "url": "sqlite:///t.db", "query": "select name, count, score from items order by count"}


def _sqlite_path(tmp_path):
    sqlite_db(tmp_path / "t.sqlite")
    return {"path": "t.sqlite", "query": "select * from items"}


@pytest.mark.parametrize(
    "make, kind",
    [
        (_csv, "csv"),
        (_tsv, "tsv"),
        (_parquet, "parquet"),
        (_json_records, "json"),
        (_json_lines_named_json, "json"),
        (_jsonl, "jsonl"),
        (_sql_url, "sql"),
        (_sqlite_path, "sql"),
    ],
    ids=["csv", "tsv", "parquet", "json-records", "json-lines-in-.json", "jsonl", "sql-url", "sqlite-path"],
)
def test_every_source_type_reads_the_same_table(tmp_path, make, kind):
    source = resolve_source(make(tmp_path), resolver(tmp_path))
    assert source.type == kind
    table = read_table(source)
    pd.testing.assert_frame_equal(table, TABLE, check_dtype=False)
    assert pd.api.types.is_integer_dtype(table["count"])
    assert pd.api.types.is_float_dtype(table["score"])
    assert fingerprint(table) == fingerprint(TABLE.astype({"name": table["name"].dtype}))


def test_sql_source_resolves_the_url_to_an_absolute_path(tmp_path):
    sqlite_db(tmp_path / "t.db")
    source = resolve_source({"type": "sql", "url": "sqlite:///t.db", "query": "select 1"}, resolver(tmp_path))
    assert source == ResolvedSource("sql", url=f"sqlite:///{(tmp_path / 't.db').resolve()}", query="select 1")
    assert ResolvedSource.from_dict(source.to_dict()) == source
    assert source.to_dict() == {"type": "sql", "url": source.url, "query": "select 1"}


def test_file_source_records_its_absolute_path(tmp_path):
    write(tmp_path / "sub" / "t.csv", CSV)
    source = resolve_source("sub/t.csv", resolver(tmp_path))
    assert source.to_dict() == {"type": "csv", "path": str((tmp_path / "sub" / "t.csv").resolve())}
    assert source.label == source.path


def test_explicit_type_wins_over_the_extension(tmp_path):
    write(tmp_path / "t.txt", CSV.replace(",", "\t"))
    table = read_table(resolve_source({"type": "tsv", "path": "t.txt"}, resolver(tmp_path)))
    assert list(table.columns) == ["name", "count", "score"]
    assert table["score"].tolist() == [0.5, 1.25, -2.0]


def test_bad_sqlite_query_lists_the_tables(tmp_path):
    sqlite_db(tmp_path / "t.db", tables=("items", "shops"))
    source = resolve_source({"type": "sql", "url": "sqlite:///t.db", "query": "select * from itms"}, resolver(tmp_path))
    with pytest.raises(DataError) as error:
        read_table(source)
    message = str(error.value)
    assert "no such table: itms" in message
    assert message.endswith("Its tables: items, shops")
    assert error.value.key == ("data", "source", "query")


def test_sqlite_query_cannot_change_the_database(tmp_path):
    db = sqlite_db(tmp_path / "t.db")
    source = ResolvedSource("sql", url=f"sqlite:///{db}", query="delete from items")
    with pytest.raises(DataError, match="readonly database"):
        read_table(source)
    assert sqlite3.connect(db).execute("select count(*) from items").fetchone() == (3,)


@pytest.mark.parametrize(
    "name, text",
    [("empty.csv", ""), ("blank.csv", "\n\n"), ("empty.tsv", ""), ("empty.json", ""), ("empty.jsonl", "  \n")],
)
def test_empty_file_is_a_data_error(tmp_path, name, text):
    write(tmp_path / name, text)
    with pytest.raises(DataError) as error:
        read_table(resolve_source(name, resolver(tmp_path)))
    assert str(error.value) == f"{tmp_path / name}: the file is empty; expected a table with a header row"


@pytest.mark.parametrize("name, text", [("head.csv", "name,count,score\n"), ("head.tsv", "name\tcount\tscore\n")])
def test_header_only_file_names_its_columns(tmp_path, name, text):
    write(tmp_path / name, text)
    with pytest.raises(DataError) as error:
        read_table(resolve_source(name, resolver(tmp_path)))
    assert str(error.value) == f"{tmp_path / name}: the table has a header (name, count, score) but no rows"


def test_query_with_no_rows_is_a_data_error(tmp_path):
    db = sqlite_db(tmp_path / "t.db")
    with pytest.raises(DataError, match=r"the table has a header \(name, count, score\) but no rows"):
        read_table(ResolvedSource("sql", url=f"sqlite:///{db}", query="select * from items where count > 9"))


def test_empty_json_list_has_no_columns(tmp_path):
    write(tmp_path / "t.json", "[]")
    with pytest.raises(DataError, match="the table has no columns"):
        read_table(resolve_source("t.json", resolver(tmp_path)))


def test_missing_file_is_a_data_error(tmp_path):
    path = tmp_path / "gone.csv"
    with pytest.raises(DataError) as error:
        read_table(ResolvedSource("csv", path=str(path)))
    assert str(error.value) == f"{path}: file not found"


def test_unreadable_parquet_names_the_file_and_type(tmp_path):
    write(tmp_path / "t.parquet", "name,count\nant,1\n")
    with pytest.raises(DataError) as error:
        read_table(resolve_source("t.parquet", resolver(tmp_path)))
    assert str(error.value).startswith(f"{tmp_path / 't.parquet'}: cannot read it as parquet: ")


def test_unknown_extension_says_what_is_accepted(tmp_path):
    write(tmp_path / "t.xlsx", "")
    with pytest.raises(ValueError) as error:
        resolve_source("t.xlsx", resolver(tmp_path))
    message = str(error.value)
    assert message.startswith("cannot tell the type of 't.xlsx' from its name: give {type: ..., path: ...}")
    assert "audio, csv, huggingface, images, json, jsonl, parquet, sql, tsv, video" in message
    assert ".parquet" in message and ".sqlite" in message


def test_unknown_type_suggests_the_closest(tmp_path):
    with pytest.raises(ValueError) as error:
        resolve_source({"type": "parqet", "path": "t.parquet"}, resolver(tmp_path))
    assert (
        str(error.value)
        == "unknown source type 'parqet'. Did you mean 'parquet'? Known: audio, csv, huggingface, images, json, jsonl, parquet, sql, tsv, video"
    )


def test_a_folder_is_an_image_source_and_not_a_table(tmp_path):
    (tmp_path / "images").mkdir()
    assert resolve_source("images", resolver(tmp_path)).type == "images"
    with pytest.raises(ValueError, match="a csv source is a file; 'images' is not"):
        resolve_source({"type": "csv", "path": "images"}, resolver(tmp_path))


@pytest.mark.parametrize(
    "source, fragment",
    [
        ({"type": "sql", "url": "sqlite:///t.db"}, "an sql source needs a `query`"),
        ({"type": "sql", "query": "select 1"}, "an sql source needs a `url`"),
        ({"type": "sql", "url": "sqlite://t.db", "query": "select 1"}, "three slashes"),
        ({"type": "csv", "path": "t.csv", "query": "select 1"}, "`url` and `query` belong to sql sources, not csv"),
        ({"type": "csv"}, "a csv source needs a `path`"),
    ],
)
def test_inconsistent_source_mapping(tmp_path, source, fragment):
    write(tmp_path / "t.csv", CSV)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        resolve_source(source, resolver(tmp_path))


def test_fingerprint_changes_with_a_value_and_not_otherwise(tmp_path):
    write(tmp_path / "t.csv", CSV)
    source = resolve_source("t.csv", resolver(tmp_path))
    first = fingerprint(read_table(source))
    assert len(first) == 16 and int(first, 16) >= 0
    assert fingerprint(read_table(source)) == first  # read again, nothing changed

    write(tmp_path / "t.csv", CSV.replace("1.25", "1.5"))
    changed = fingerprint(read_table(source))
    assert changed != first

    write(tmp_path / "t.csv", CSV.replace("bee", "bea"))
    assert fingerprint(read_table(source)) not in (first, changed)

    write(tmp_path / "t.csv", CSV)
    assert fingerprint(read_table(source)) == first


def test_fingerprint_sees_column_names_and_row_order():
    base = fingerprint(TABLE)
    assert fingerprint(TABLE.rename(columns={"score": "points"})) != base
    assert fingerprint(TABLE.iloc[::-1].reset_index(drop=True)) != base
    assert fingerprint(TABLE.set_axis([5, 6, 7])) == base  # the index is not content


def test_fingerprint_of_a_json_table_with_lists_in_cells(tmp_path):
    write(tmp_path / "t.json", '[{"x": 1.5, "steps": [1, 2]}, {"x": 2.5, "steps": [3]}]')
    source = resolve_source("t.json", resolver(tmp_path))
    first = fingerprint(read_table(source))
    write(tmp_path / "t.json", '[{"x": 1.5, "steps": [1, 2]}, {"x": 2.5, "steps": [4]}]')
    assert len(first) == 16
    assert fingerprint(read_table(source)) != first

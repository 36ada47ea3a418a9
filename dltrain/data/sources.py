"""The source registry: a table from csv, tsv, parquet, json, jsonl or SQL, as a pandas DataFrame."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dltrain.components import Registry, suggest
from dltrain.console import warn
from dltrain.data.remote import is_remote, local_copy
from dltrain.errors import DataError, first_line

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".db": "sql",
    ".sqlite": "sql",
    ".sqlite3": "sql",
}


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its type known and its paths absolute: what data.json records."""

    type: str
    path: str | None = None
    url: str | None = None
    query: str | None = None
    # sql: the order rows are read in, which row positions (a run's splits) rely on. None: dltrain's
    # own (sql_order); "columns": ORDER BY every column; "query": as the query or the database gives
    # them, as runs recorded before dltrain imposed an order were read
    order: str | None = None
    # huggingface: the split read (train, test, ...) and the dataset's configuration name
    split: str | None = None
    config: str | None = None
    # a url read through fsspec (s3://, gs://, az://, https://): the object's identity when it was read
    # (its ETag and version; for a folder prefix, a hash of its objects' identities)
    etag: str | None = None
    # a remote source's cached copy: the url it was fetched from (how messages name it); never recorded
    origin: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "origin"}

    @classmethod
    def from_dict(cls, data: dict) -> ResolvedSource:
        return cls(**data)

    @property
    def label(self) -> str:
        """How messages name it."""
        if self.origin:
            return self.origin
        if self.type == "huggingface":
            return f"{self.path} ({'config ' + self.config + ', ' if self.config else ''}split {self.split or 'train'})"
        return self.path or f"{redact_url(self.url or '')} ({self.query})"

    def files(self) -> list[str]:
        """The files or folders it reads on this machine (an SQLite database's file; none for a server)."""
        if self.type == "huggingface" and self.path and not os.path.isabs(self.path):
            return []  # a hub name: in the Hugging Face cache, or downloaded
        if self.path and is_remote(self.path):
            return []  # fetched into the cache when read
        if self.path:
            return [self.path]
        if self.url and self.url.startswith("sqlite:///"):
            return [self.url[len("sqlite:///") :]]
        return []


def csv_options(source: ResolvedSource) -> dict:
    """How to read a CSV or TSV file: its separator and encoding, found from its first lines.

    A .csv whose header splits on ';' (spreadsheets in many locales) is read with ';' and decimal
    commas; '\t' and '|' likewise. A file that is not UTF-8 is read as Windows-1252 (which also
    reads Latin-1), with a warning.
    """
    default = "\t" if source.type == "tsv" else ","
    options: dict = {"sep": default}
    _check_width(source)
    try:
        header = pd.read_csv(source.path, nrows=20, sep=default)
    except UnicodeDecodeError:
        options["encoding"] = "cp1252"
        header = pd.read_csv(source.path, nrows=20, sep=default, encoding="cp1252")
        _warn_once(source.path, f"{source.label}: not UTF-8; read as Windows-1252 (Latin-1). Save it as UTF-8 to be sure of its accents")
    except pd.errors.ParserError:
        header = None
    if header is None or len(header.columns) == 1:
        first = _first_line(source.path, options.get("encoding", "utf-8"))
        for sep in (";", "\t", "|", ","):
            if sep != default and first.count(sep) >= 1:
                options["sep"] = sep
                if sep == ";":
                    options["decimal"] = ","
                shown = {"\t": "tabs", ";": "';' (numbers with decimal commas)", "|": "'|'", ",": "','"}[sep]
                _warn_once(source.path + sep, f"{source.label}: its columns are separated by {shown}; read that way")
                break
    return options


def _first_line(path: str, encoding: str, limit: int = -1) -> str:
    with pd.io.common.get_handle(path, "r", encoding=encoding, compression="infer", errors="replace") as handle:
        return handle.handle.readline(limit)


MAX_COLUMNS = 100_000  # wide genomics tables have tens of thousands; a header of millions is no table to train on
_HEADER_LIMIT = 16 * 1024 * 1024  # characters of a header line read to count its columns


def _check_width(source: ResolvedSource) -> None:
    """A header line of more columns than MAX_COLUMNS is a DataError before pandas parses it (a
    header of millions of columns takes minutes and gigabytes to read)."""
    first = _first_line(source.path, "utf-8", _HEADER_LIMIT)
    if len(first) >= _HEADER_LIMIT and not first.endswith("\n"):
        raise DataError(f"{source.label}: its first line is over {_HEADER_LIMIT // 2**20} MB long; a header of a table dltrain reads has at most {MAX_COLUMNS:,} columns")
    columns = 1 + max(first.count(sep) for sep in (",", ";", "\t", "|"))
    if columns > MAX_COLUMNS:
        raise DataError(f"{source.label}: its header line has {columns:,} columns; dltrain reads tables of at most {MAX_COLUMNS:,} columns (select the columns you need first)")


def _warn_once(key: str, message: str) -> None:
    warn(message, key=("source", key))


def _read_csv(source: ResolvedSource) -> pd.DataFrame:
    options = csv_options(source)
    try:
        return pd.read_csv(source.path, **options)
    except UnicodeDecodeError:  # not UTF-8 further down than the first rows
        if options.get("encoding"):
            raise
        _warn_once(source.path, f"{source.label}: not UTF-8; read as Windows-1252 (Latin-1). Save it as UTF-8 to be sure of its accents")
        return pd.read_csv(source.path, **{**options, "encoding": "cp1252"})


_read_tsv = _read_csv


def _read_parquet(source: ResolvedSource) -> pd.DataFrame:
    import pyarrow.parquet as pq

    columns = len(pq.read_schema(source.path).names)
    if columns > MAX_COLUMNS:
        raise DataError(f"{source.label}: it has {columns:,} columns; dltrain reads tables of at most {MAX_COLUMNS:,} columns (select the columns you need first)")
    return pd.read_parquet(source.path)


def _text_of(path: str) -> str:
    with pd.io.common.get_handle(path, "r", encoding="utf-8", compression="infer") as handle:
        return handle.handle.read()


def _read_json(source: ResolvedSource) -> pd.DataFrame:
    text = _text_of(source.path)
    if not text.strip():
        raise pd.errors.EmptyDataError("no data")
    try:
        return pd.read_json(source.path)
    except ValueError:  # one object per line, with a .json extension
        return pd.read_json(source.path, lines=True)


def _read_jsonl(source: ResolvedSource) -> pd.DataFrame:
    if not _text_of(source.path).strip():
        raise pd.errors.EmptyDataError("no data")
    return pd.read_json(source.path, lines=True)


def _folder_reader(kind: str) -> Callable[[ResolvedSource], pd.DataFrame]:
    def read(source: ResolvedSource) -> pd.DataFrame:
        from dltrain.data.encoders import ENCODERS

        return ENCODERS.get(kind).folder_table(Path(source.path))

    return read


def _read_huggingface(source: ResolvedSource) -> pd.DataFrame:
    from dltrain.data.huggingface import read

    return read(source)


def _chunks_huggingface(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    from dltrain.data.huggingface import chunks

    yield from chunks(source, rows, columns)


def sql_order(source: ResolvedSource) -> str:
    """How an sql source's rows are ordered: "query" where its query ends in an ORDER BY of its own
    (or a run recorded it so), else "columns": ORDER BY every column, since a database returns rows
    in whatever order it finds them (PostgreSQL's changes after an UPDATE that changes nothing).
    A statement that is no SELECT (a PRAGMA) cannot be a subquery: it is read as it is, "query"."""
    query = source.query or ""
    if source.order == "query" or _ends_in_order_by(query) or not re.match(r"\s*\(*\s*(select|with|values)\b", query, re.I):
        return "query"
    return "columns"


def _bare(query: str) -> str:
    return query.strip().rstrip(";").rstrip()


def _ends_in_order_by(query: str) -> bool:
    """Whether the query's own last clause is an ORDER BY (not one inside a subquery or a window)."""
    text = _bare(query).lower()
    found = [m.end() for m in re.finditer(r"\border\s+by\b", text)]
    if not found:
        return False
    tail = text[found[-1] :]
    return tail.count("(") == tail.count(")")  # "order by a) as x": it closes a subquery


def _ordered(query: str, width: int) -> str:
    """The query with its rows in one order: by every column, by position (portable across databases)."""
    return f"SELECT * FROM ({_bare(query)}) AS dltrain_rows ORDER BY {', '.join(str(i + 1) for i in range(width))}"


def _probe(query: str) -> str:
    return f"SELECT * FROM ({_bare(query)}) AS dltrain_rows LIMIT 0"


def _sqlite_query(source: ResolvedSource, connection: sqlite3.Connection) -> str:
    if sql_order(source) == "query":
        return source.query
    return _ordered(source.query, len(connection.execute(_probe(source.query)).description))


_ORDER_HINT = (
    "; dltrain reads rows in one fixed order (ORDER BY every column) so that a run's rows stay the same "
    "rows: end the query with an ORDER BY of your own (ORDER BY id) to choose the order"
)


def _read_sql(source: ResolvedSource) -> pd.DataFrame:
    return next(_sql_frames(source, None))


def _sql_frames(source: ResolvedSource, rows: int | None) -> Iterator[pd.DataFrame]:
    """The query's rows: in one DataFrame (`rows` None), or `rows` at a time as the database sends
    them (a server-side cursor where the driver has one: psycopg; others buffer the result)."""
    url = source.url or f"sqlite:///{source.path}"
    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///") :])
        # read-only: a query can never change the user's database
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            found = pd.read_sql_query(_sqlite_query(source, connection), connection, chunksize=rows)
            yield from ([found] if rows is None else found)
        except (sqlite3.Error, pd.errors.DatabaseError) as error:
            tables = [r[0] for r in connection.execute("select name from sqlite_master where type in ('table','view')")]
            raise DataError(
                f"the query on {database} failed: {error}. Its tables: {', '.join(tables) or 'none'}",
                key=("data", "source", "query"),
            ) from None
        finally:
            connection.close()
        return
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        raise DataError(
            f"{url!r} is not a database url: expected dialect://..., like sqlite:///data/my.db or "
            "postgresql://user@host/db",
            key=("data", "source", "url"),
        )
    try:
        import sqlalchemy
    except ImportError:
        raise DataError(
            f"the url {redact_url(url)!r} needs SQLAlchemy and the database's driver: pip install sqlalchemy "
            "(and e.g. psycopg for PostgreSQL). sqlite:/// urls need nothing extra.",
            key=("data", "source", "url"),
        ) from None
    real = connect_url(url)
    try:
        with sqlalchemy.create_engine(real).connect() as connection:
            query = source.query
            if sql_order(source) == "columns":
                query = _ordered(query, len(connection.execute(sqlalchemy.text(_probe(query))).keys()))
            if rows is None:
                yield pd.read_sql_query(sqlalchemy.text(query), connection)
            else:
                yield from pd.read_sql_query(sqlalchemy.text(query), connection.execution_options(stream_results=True), chunksize=rows)
    except GeneratorExit:
        raise
    except Exception as error:  # drivers raise their own types; their messages may quote the url
        said = _scrubbed(first_line(error), real, url)
        hint = ""
        if _USERINFO.match(url) and any(word in said.lower() for word in ("password", "authentication")):
            hint = f" (the password comes from {_password_source(url)})"
        elif sql_order(source) == "columns" and "order" in said.lower():
            hint = _ORDER_HINT
        raise DataError(f"{redact_url(url)} ({source.query}): cannot read it as sql: {said}{hint}", key=("data", "source", "url")) from None


# ----- passwords in database urls: read from the config or the environment, never written to a run

_USERINFO = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*:)(?P<password>[^@]*)(?P<tail>@.*)$", re.S)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)(?P<password>[^&#]*)", re.I)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REDACTED = "***"
# the environment variable each driver reads its password from; dltrain reads it for a redacted url
_PASSWORD_VARIABLES = {"postgresql": "PGPASSWORD", "postgres": "PGPASSWORD", "mysql": "MYSQL_PWD", "mariadb": "MYSQL_PWD"}
_GIVEN: dict[str, str] = {}  # a redacted url -> the url with its password, as this process's config gave it


def redact_url(url: str) -> str:
    """`url` with a literal password written as *** (postgresql://user:***@host/db).

    A password given as `${NAME}` (read from the environment when the data is read) stays as it is.
    """
    def hidden(password: str) -> bool:
        return password not in ("", REDACTED) and not _REFERENCE.fullmatch(password)

    match = _USERINFO.match(url)
    if match and hidden(match["password"]):
        url = match["head"] + REDACTED + match["tail"]
    return _QUERY_PASSWORD.sub(lambda m: m["key"] + (REDACTED if hidden(m["password"]) else m["password"]), url)


def redact_secrets(value: Any) -> Any:
    """A config or data.json with the password of every database url in it written as ***."""
    if isinstance(value, dict):
        return {key: redact_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def password_variable(url: str) -> str:
    """The environment variable that gives a redacted url its password: the driver's own where it has one."""
    dialect = url.split("://", 1)[0].split("+", 1)[0].lower()
    return _PASSWORD_VARIABLES.get(dialect, "DLTRAIN_DB_PASSWORD")


def _password_source(url: str) -> str:
    match = _USERINFO.match(url)
    if match and match["password"] == REDACTED and url not in _GIVEN:
        return f"${password_variable(url)}"
    if match and (reference := _REFERENCE.fullmatch(match["password"])):
        return f"${reference[1]}"
    return "the config"


def _keep_password(url: str) -> str:
    """A url as the config gives it -> the url a run records: a literal password is kept in this
    process alone (to read the data now) and recorded as ***."""
    hidden = redact_url(url)
    if hidden != url:
        _GIVEN[hidden] = url
        variable = password_variable(url)
        warn(
            f"the database url {hidden} holds a password: a run never writes one, so its files keep the url "
            f"as shown, and evaluate and --resume take the password from ${variable}. Write the url with "
            f"${{{variable}}} in place of the password to say so in the config",
            key=("source", hidden),
        )
    return hidden


def connect_url(url: str) -> str:
    """The url to connect with: `${NAME}` from the environment; a redacted password from this
    process's config, or from the driver's environment variable (PGPASSWORD for PostgreSQL)."""
    if url in _GIVEN:
        url = _GIVEN[url]
    match = _USERINFO.match(url)
    if match and match["password"] == REDACTED:
        variable = password_variable(url)
        if variable not in os.environ:
            raise DataError(
                f"the database url {url} has no password: dltrain never writes one to a run or its checkpoints. "
                f"Give it in the environment (export {variable}=...) and run the command again; in a config, "
                f"write the url as {match['head']}${{{variable}}}{match['tail']}",
                key=("data", "source", "url"),
            )
        url = match["head"] + f"${{{variable}}}" + match["tail"]
        match = _USERINFO.match(url)
    if match:  # a password from the environment is quoted: it may hold @, / or :
        head, tail = _substituted(match["head"], url, False), _substituted(match["tail"], url, False)
        return head + _substituted(match["password"], url, True) + tail
    return _substituted(url, url, False)


def _substituted(text: str, url: str, quote: bool) -> str:
    from urllib.parse import quote as quoted

    def value(reference: re.Match) -> str:
        name = reference[1]
        if name not in os.environ:
            raise DataError(
                f"the database url {redact_url(url)} uses ${{{name}}}, which is not set in the environment: "
                f"export {name}=... and run the command again (its value is read when the data is, never written to the run)",
                key=("data", "source", "url"),
            )
        return quoted(os.environ[name], safe="") if quote else os.environ[name]

    return _REFERENCE.sub(value, text)


def _scrubbed(message: str, real: str, url: str) -> str:
    """A driver's message with the password it was given written as ***."""
    match = _USERINFO.match(real)
    secrets = [match["password"]] if match and match["password"] else []
    secrets += [m["password"] for m in _QUERY_PASSWORD.finditer(real) if m["password"]]
    from urllib.parse import unquote

    for secret in sorted({*secrets, *map(unquote, secrets)}, key=len, reverse=True):
        message = message.replace(secret, REDACTED)
    return message.replace(real, redact_url(url))


SOURCES: Registry[Callable[[ResolvedSource], pd.DataFrame]] = Registry(
    "source type",
    {
        "csv": _read_csv,
        "tsv": _read_tsv,
        "parquet": _read_parquet,
        "json": _read_json,
        "jsonl": _read_jsonl,
        "sql": _read_sql,
        "images": _folder_reader("image"),
        "audio": _folder_reader("audio"),
        "video": _folder_reader("video"),
        "huggingface": _read_huggingface,
    },
)

FOLDER_TYPES = ("images", "audio", "video")  # sources that are folders of class subfolders, not files


COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")  # pandas reads these compressed tables as they are


def kind_of(path: str | Path) -> str | None:
    """The source type a file name says: data.csv -> csv, data.csv.gz -> csv."""
    name = Path(path)
    if name.suffix.lower() in COMPRESSED:
        name = name.with_suffix("")
        kind = EXTENSIONS.get(name.suffix.lower())
        return kind if kind in ("csv", "tsv", "json", "jsonl") else None
    return EXTENSIONS.get(name.suffix.lower())


def resolve_source(source: Any, resolve: Callable[[str, tuple], Path]) -> ResolvedSource:
    """A config's source (a path, or a mapping) as a ResolvedSource.

    `resolve(value, key)` turns a path from the config into an absolute Path, or raises naming `key`.
    Raises ValueError with what would be accepted.
    """
    if isinstance(source, str):
        source = {"path": source}
    kind = source.get("type")
    path = source.get("path")
    url, query = source.get("url"), source.get("query")
    if is_remote(path) and kind != "huggingface":
        if url or query or source.get("split") is not None or source.get("config") is not None:
            raise ValueError(f"a source read from a url ({path}) takes `type` and `path` alone")
        from dltrain.data.remote import resolve_remote

        resolved = resolve_remote(kind, path)
        if resolved.type not in SOURCES.entries:
            raise ValueError(f"unknown source type '{resolved.type}'.{suggest(resolved.type, SOURCES.names())} Known: {', '.join(SOURCES.names())}")
        return resolved
    if kind is None:
        if path is None:
            kind = "sql" if url else None
        else:
            kind = kind_of(path)
            folder = resolve(path, ("path",) if len(source) > 1 else ())
            if kind is None and folder.is_dir():
                kind = _folder_kind(folder)
        if kind is None:
            raise ValueError(
                f"cannot tell the type of '{path or url}' from its name: give {{type: ..., path: ...}} "
                f"with a type of {', '.join(SOURCES.names())}, or a file ending in {', '.join(sorted(EXTENSIONS))}"
            )
    if kind not in SOURCES.entries:
        raise ValueError(f"unknown source type '{kind}'.{suggest(kind, SOURCES.names())} Known: {', '.join(SOURCES.names())}")
    key_prefix = ("path",) if len(source) > 1 or "type" in source else ()
    if kind != "huggingface" and (source.get("split") is not None or source.get("config") is not None):
        raise ValueError(f"`split` and `config` belong to huggingface sources, not {kind}")
    if kind == "huggingface":
        return _huggingface_source(source, resolve, key_prefix)
    if kind == "sql":
        if not query:
            raise ValueError("an sql source needs a `query` (for example: select * from my_table)")
        if url is None and path is None:
            raise ValueError("an sql source needs a `url` (sqlite:///data/my.db) or the `path` of an SQLite file")
        if url is not None and url.startswith("sqlite:///"):
            url = "sqlite:///" + str(resolve(url[len("sqlite:///") :], ("url",)))
        elif url is not None and url.startswith("sqlite:"):
            raise ValueError(f"an SQLite url has three slashes and a path: sqlite:///data/my.db, found {url!r}")
        elif url is not None:
            url = _keep_password(url)  # what a run records: never the password itself
        if path is not None:
            url, path = "sqlite:///" + str(resolve(path, key_prefix)), None
        return ResolvedSource("sql", url=url, query=query)
    if path is None:
        raise ValueError(f"a {kind} source needs a `path`")
    if url or query:
        raise ValueError(f"`url` and `query` belong to sql sources, not {kind}")
    resolved = resolve(path, key_prefix)
    if (kind in FOLDER_TYPES) != resolved.is_dir():
        expected = "a folder with one subfolder per class" if kind in FOLDER_TYPES else "a file"
        raise ValueError(f"a {kind} source is {expected}; '{path}' is not")
    return ResolvedSource(kind, path=str(resolved))


def _huggingface_source(source: dict, resolve: Callable[[str, tuple], Path], key_prefix: tuple) -> ResolvedSource:
    """A local dataset's folder made absolute; a hub name (`name`, `owner/name`) that is no folder here kept as it is."""
    from dltrain.data.huggingface import looks_like_hub_name

    path, split, config = source.get("path"), source.get("split"), source.get("config")
    if not path:
        raise ValueError("a huggingface source needs a `path`: a folder written by save_to_disk, a folder of data files, or a hub name")
    if source.get("url") or source.get("query"):
        raise ValueError("`url` and `query` belong to sql sources, not huggingface")
    for key, value in (("split", split), ("config", config)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"a huggingface source's `{key}` is a name, found {value!r}")
    try:
        found = str(resolve(path, key_prefix))
    except Exception:  # not here: a hub name, or a path that is wrong
        if not looks_like_hub_name(path):
            raise
        found = path
    return ResolvedSource("huggingface", path=found, split=split or "train", config=config)


@contextmanager
def _reading(source: ResolvedSource):
    """Any problem reading `source` becomes a DataError that names it."""
    try:
        yield
    except DataError as error:
        if source.origin:  # a url's copy in the cache: named by the url
            raise DataError(str(error).replace(source.path, source.origin.rstrip("/")), error.key) from None
        raise
    except FileNotFoundError:
        raise DataError(f"{source.label}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.label}: the file is empty; expected a table with a header row") from None
    except Exception as error:  # pandas, pyarrow and database drivers raise their own types
        raise DataError(f"{source.label}: cannot read it as {source.type}: {first_line(error)}") from None


def read_table(source: ResolvedSource) -> pd.DataFrame:
    """Read a whole table; any problem is a DataError that names the file."""
    source = local_copy(source)  # a url: its copy in the cache
    with _reading(source):
        table = SOURCES.get(source.type)(source)
    return _checked(table, source)


def _checked(table: pd.DataFrame, source: ResolvedSource) -> pd.DataFrame:
    if len(table.columns) == 0:
        raise DataError(f"{source.label}: the table has no columns")
    if len(table) == 0:
        raise DataError(f"{source.label}: the table has a header ({', '.join(map(str, table.columns))}) but no rows")
    table.columns = [str(c) for c in table.columns]
    if source.path and not source.origin and source.type not in (*FOLDER_TYPES, "huggingface"):  # huggingface: absolute already
        _absolute_file_paths(table, Path(source.path).parent)
    duplicated = table.columns[table.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{source.label}: column names appear twice: {', '.join(duplicated)}")
    return table


def _chunks_csv(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    yield from pd.read_csv(source.path, chunksize=rows, usecols=columns, **csv_options(source))


def _chunks_parquet(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    # pre_buffer would read every row group at once: the whole file in memory
    for batch in pq.ParquetFile(source.path, pre_buffer=False).iter_batches(batch_size=rows, columns=columns, use_threads=False):
        yield batch.to_pandas()


def _chunks_jsonl(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    for chunk in pd.read_json(source.path, lines=True, chunksize=rows):
        yield chunk[columns] if columns else chunk


def _chunks_sql(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    for chunk in _sql_frames(source, rows):
        yield chunk[columns] if columns else chunk


def _chunks_whole(source: ResolvedSource, rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    table = SOURCES.get(source.type)(source)  # json arrays and folders are read whole
    yield table[columns] if columns else table


CHUNK_READERS = {"csv": _chunks_csv, "tsv": _chunks_csv, "parquet": _chunks_parquet, "jsonl": _chunks_jsonl, "sql": _chunks_sql, "huggingface": _chunks_huggingface}


def read_chunks(source: ResolvedSource, rows: int = 65536, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most `rows` rows, each indexed by its rows' positions in the whole table."""
    reader = CHUNK_READERS.get(source.type, _chunks_whole)
    source = local_copy(source)  # a url: its copy in the cache
    start = 0
    with _reading(source):
        for chunk in reader(source, rows, columns):
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            if len(chunk):
                yield _checked(chunk, source)
    if start == 0:
        raise DataError(f"{source.label}: the table has no rows")


def _folder_kind(folder: Path) -> str:
    """images, audio or video, from what the class subfolders hold.

    Sound or video files make it audio or video. Subfolders in the class folders are clips of frame
    images only where no class folder holds an image itself: a folder of photos with a `batch2/`
    or `.ipynb_checkpoints/` inside stays a folder of images.
    """
    from dltrain.data.audio import is_audio_file
    from dltrain.data.images import is_image_path
    from dltrain.data.media import class_folders
    from dltrain.data.video import EXTENSIONS as VIDEO

    subfolders = images = False
    for entries in class_folders(folder).children.values():  # the listing that reading the folder uses too
        for item in entries:
            if is_audio_file(item):
                return "audio"
            if item.name.lower().endswith(VIDEO):
                return "video"
            if item.is_dir():
                subfolders = True
            elif is_image_path(item.name):
                images = True
    return "video" if subfolders and not images else "images"


def _absolute_file_paths(table: pd.DataFrame, folder: Path) -> None:
    """Columns of file paths (images, sounds, clips) are relative to the table's own folder: make them absolute."""
    from dltrain.data.audio import EXTENSIONS as AUDIO
    from dltrain.data.images import EXTENSIONS as IMAGES
    from dltrain.data.video import EXTENSIONS as VIDEO

    EXTENSIONS = IMAGES + AUDIO + VIDEO
    for name in table.columns:
        series = table[name]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        text = series.dropna().astype("string")
        # a column of paths, even with a few cells that are not (a typo, a missing extension): all
        # of its cells are relative to the table's folder, and a cell that is no file says so later
        if len(text) and float(text.str.lower().str.endswith(EXTENSIONS).mean()) > 0.5:
            table[name] = series.map(lambda p: os.path.normpath(os.path.join(folder, p)) if isinstance(p, str) else p)


class Fingerprint:
    """A hash of a table's content, fed whole or chunk by chunk (the same hash either way)."""

    def __init__(self, columns: list[str]):
        self.digest = hashlib.sha256(",".join(columns).encode())
        self.rows = 0  # rows hashed: what a message about changed data compares

    def add(self, rows: pd.DataFrame) -> None:
        self.rows += len(rows)
        try:
            hashed = pd.util.hash_pandas_object(rows, index=False)
        except TypeError:  # cells that hold lists (a JSON sequence per row): hash their text
            hashed = pd.util.hash_pandas_object(rows.astype(str), index=False)
        self.digest.update(hashed.to_numpy().tobytes())

    def result(self) -> str:
        return self.digest.hexdigest()[:16]


def fingerprint(table: pd.DataFrame) -> str:
    """A hash of the table's content, so that evaluate can tell when the data changed."""
    hashing = Fingerprint(list(table.columns))
    hashing.add(table)
    return hashing.result()

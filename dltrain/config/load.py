"""Load, override and validate a config's shape and values; every problem has its file:line and key.

What needs the registries (layer, loss, optimizer and metric names, column types) or the data is
checked by the plan step (`dltrain.plan`), which reports its problems together with these.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dltrain.components import suggest
from dltrain.config.schema import DEFAULT_OPTIMIZER, SECTIONS, ByColumn, Config, Files, Ratios, Source
from dltrain.config.yaml import YamlError, load_yaml
from dltrain.errors import ConfigError, Problem

COMMAND_LINE = "command line"


@dataclass
class LoadedConfig:
    """A validated config, with what is needed to cite its lines and resolve its paths."""

    config: Config | None  # None when the file's shape is wrong (then `problems` says how)
    raw: dict  # as written, overrides applied
    origin: str  # the file, or "<dict>"
    base_dir: Path  # relative paths resolve here first, then in the current folder
    lines: dict[tuple, tuple[str, int | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # what is wrong with its shape and values
    assigned: dict[tuple, tuple[str, int | None]] = field(default_factory=dict)  # paths `with_values` set, and whose line they cite

    @property
    def name(self) -> str:
        if self.config is not None and self.config.name:
            return self.config.name
        return Path(self.origin).stem if self.lines else "run"

    def where(self, path: tuple) -> str:
        """'file:line' of the nearest key on `path` that has a line; a part that holds a value set
        by `with_values` cites that value's line."""
        for key, (source, line) in self.assigned.items():
            if path and key[: len(path)] == path:
                return source if line is None else f"{source}:{line}"
        return where(self.lines, self.origin, path)

    def problem(self, path: tuple, message: str) -> Problem:
        return Problem(self.where(path), _dotted(path), message)

    def error(self, path: tuple, message: str) -> ConfigError:
        return ConfigError([self.problem(path, message)])

    def resolve_path(self, value: str, path: tuple) -> Path:
        """A path from the config: relative to the config's folder, then to the current folder."""
        return resolve_path(value, self.base_dir, lambda m: self.error(path, m))

    def as_run(self) -> dict:
        """The config as run: defaults filled, overrides applied, paths absolute, `auto` kept."""
        data = self.config.model_dump(mode="json", exclude_none=True, exclude={"tune"})  # a run is one point of a search
        data["name"] = self.name
        for key in ("loss", "optimizer", "scheduler"):
            if self.raw.get(key) is not None:
                data[key] = copy.deepcopy(self.raw[key])
        data["model"]["layers"] = copy.deepcopy(self.raw["model"]["layers"])
        source = self.config.data.source
        if source is not None:
            data["data"]["source"] = self._absolute_source(source, ("data", "source"))
        split = self.config.data.split
        if isinstance(split, Files):
            for name in ("train", "val", "test"):
                if getattr(split, name) is not None:
                    data["data"]["split"][name] = self._absolute_source(getattr(split, name), ("data", "split", name))
        return data

    def _absolute_source(self, source: str | Source, path: tuple) -> str | dict:
        from dltrain.data.remote import is_remote  # a url (s3://, https://) is no path on this machine

        if isinstance(source, str):
            return source if is_remote(source) else str(self.resolve_path(source, path))
        result = source.model_dump(exclude_none=True)
        if is_remote(source.path) and source.type != "huggingface":
            return result
        if source.path and source.type == "huggingface":
            try:  # a local dataset's folder; a hub name stays as it is
                result["path"] = str(self.resolve_path(source.path, (*path, "path")))
            except ConfigError:
                pass
        elif source.path:
            result["path"] = str(self.resolve_path(source.path, (*path, "path")))
        if source.url and source.url.startswith("sqlite:///"):
            result["url"] = "sqlite:///" + str(self.resolve_path(source.url[len("sqlite:///") :], (*path, "url")))
        return result


def resolve_path(value: str, base_dir: Path, error) -> Path:
    given = Path(value).expanduser()
    if given.is_absolute():
        if given.exists():
            return given
        raise error(f"file not found: {given}")
    tried = [base_dir / given, Path.cwd() / given]
    for candidate in tried:
        if candidate.exists():
            return candidate.resolve()
    places = " or ".join(dict.fromkeys(str(t.resolve()) for t in tried))
    raise error(f"file not found: '{value}' (looked for {places})")


def where(lines: dict, origin: str, path: tuple) -> str:
    # a problem with a part that the command line changed (optimizer, after optimizer.lr=...) is the command line's
    if path and any(source == COMMAND_LINE and key[: len(path)] == path for key, (source, _) in lines.items()):
        return COMMAND_LINE
    for end in range(len(path), -1, -1):
        found = lines.get(path[:end])
        if found is not None:
            source, line = found
            return source if line is None else f"{source}:{line}"
    return origin


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def parse_overrides(items: list[str]) -> tuple[list[tuple[tuple, Any]], list[Problem]]:
    """`a.b.0=value` items -> (path, value) pairs and the problems of the items that cannot be read.

    Values are read by the same YAML loader as files.
    """
    parsed, problems = [], []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(Problem(COMMAND_LINE, "", f"expected KEY=VALUE (like optimizer.lr=0.01), found '{item}'"))
            continue
        path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        try:
            value, _ = load_yaml(text, COMMAND_LINE)
        except YamlError as error:
            problems.append(Problem(COMMAND_LINE, key, f"cannot read the value '{text}': {error.problems[0].message}"))
            continue
        parsed.append((path, value))
    return parsed, problems


def _apply_override(raw: dict, path: tuple, value: Any) -> None:
    node: Any = raw
    for depth, part in enumerate(path[:-1]):
        node = _step(node, part, path[: depth + 1])
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ValueError(_index_message(node, last))
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValueError(f"{_dotted(path[:-1])} is {node!r}, which has no keys")


def _step(node: Any, part: Any, path: tuple) -> Any:
    if isinstance(node, dict):
        top_component = len(path) == 1 and part in ("loss", "optimizer", "scheduler")
        if part not in node or node[part] is None:
            # optimizer.lr=0.1 on a file without an optimizer: the default optimizer with that lr
            node[part] = dict(DEFAULT_OPTIMIZER) if path == ("optimizer",) else {}
        elif top_component and isinstance(node[part], str):  # `optimizer: SGD` given an argument
            node[part] = {"type": node[part]}
        return node[part]
    if isinstance(node, list):
        if not isinstance(part, int) or part >= len(node):
            raise ValueError(_index_message(node, part))
        item = node[part]
        if isinstance(item, str):  # `ReLU` given arguments: the one-key form
            node[part] = item = {item: None}
        return item
    raise ValueError(f"{_dotted(path[:-1])} is {node!r}, which has no keys")


def _index_message(items: list, part: Any) -> str:
    return f"'{part}' is not an index of a list of {len(items)} items (0 to {len(items) - 1})"


def load_config(
    source: str | Path | dict, overrides: list[str] | None = None, origin: str | None = None
) -> LoadedConfig:
    """Read a config file (or a dict), apply overrides, validate. Raises ConfigError with every problem.

    `origin` names a dict config in messages (a run's saved config, say).
    """
    loaded = read_config(source, overrides, origin)
    if loaded.problems:
        raise ConfigError(loaded.problems)
    return loaded


def read_config(
    source: str | Path | dict, overrides: list[str] | None = None, origin: str | None = None
) -> LoadedConfig:
    """`load_config` that keeps the problems of a readable config in `problems` instead of raising,
    so that the plan step can add its own and report them all together. A file that cannot be
    read as YAML, or overrides that cannot be applied, still raise ConfigError."""
    if isinstance(source, dict):
        raw, lines, origin, base = copy.deepcopy(source), {}, origin or "<dict>", Path.cwd()
    else:
        path = Path(source)
        origin = str(source)
        if not path.is_file():
            what = "is a folder, not a config file" if path.is_dir() else "not found"
            raise ConfigError([Problem(origin, "", f"config file {what}")])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            _data_not_config(path, origin)
            raise ConfigError([Problem(origin, "", f"cannot read the config: {error}")]) from None
        try:
            raw, line_numbers = load_yaml(text, origin)
        except YamlError as error:
            _data_not_config(path, origin)
            raise ConfigError(error.problems) from None
        if not isinstance(raw, dict):
            _data_not_config(path, origin)
        if raw is None:
            raise ConfigError([Problem(origin, "", "the config file is empty; it needs data, model and loss")])
        lines = {p: (origin, n) for p, n in line_numbers.items()}
        base = path.resolve().parent
    if not isinstance(raw, dict):
        raise ConfigError([Problem(where(lines, origin, ()), "", f"a config is a mapping of keys (data, model, loss, ...), found {type(raw).__name__}")])
    parsed, problems = parse_overrides(overrides or [])
    for path_, value in parsed:
        try:
            _apply_override(raw, path_, value)
            for key in [k for k in lines if k[: len(path_)] == path_]:
                del lines[key]
            lines[path_] = (COMMAND_LINE, None)
        except ValueError as error:
            problems.append(Problem(COMMAND_LINE, _dotted(path_), str(error)))
    if problems:
        raise ConfigError(problems)
    return validate(raw, lines, origin, base)


_TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".db", ".sqlite", ".sqlite3", ".xlsx", ".xls")
_MEDIA_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".wav", ".wave", ".mp4", ".avi", ".mov", ".mkv", ".webm", ".npy")


def _data_not_config(path: Path, origin: str) -> None:
    """A data file given where a config goes (`dltrain fit data/iris.csv`): say so, and how to write
    a config for it. Called only once the file has failed to read as a config (a .json config is one)."""
    from dltrain.errors import UsageError

    suffix = path.suffix.lower()
    if suffix in _TABLE_SUFFIXES:
        import shlex

        raise UsageError(f"{origin} is a table, not a config: write one with dltrain init {shlex.quote(origin)} --target COLUMN")
    if suffix in _MEDIA_SUFFIXES:
        raise UsageError(f"{origin} is a data file, not a config: write one with dltrain init FOLDER, FOLDER holding one subfolder of files per class")


def with_values(loaded: LoadedConfig, values: list[tuple[tuple, Any, tuple[str, int | None]]], drop: tuple[str, ...] = ()) -> LoadedConfig:
    """`loaded` with a value set at each key path (as KEY=VALUE sets it), its problems citing the
    line given with it (a tune.space entry's), and the top-level keys in `drop` left out. Unlike
    `load_config` it does not raise for the problems of the result: they are in its `problems`."""
    raw, lines = copy.deepcopy(loaded.raw), dict(loaded.lines)
    for key in drop:
        raw.pop(key, None)
        lines = {k: v for k, v in lines.items() if k[:1] != (key,)}
    problems = []
    for path, value, cite in values:
        try:
            _apply_override(raw, path, copy.deepcopy(value))
        except ValueError as error:
            problems.append(Problem(cite[0] if cite[1] is None else f"{cite[0]}:{cite[1]}", _dotted(path), str(error)))
            continue
        lines = {k: v for k, v in lines.items() if k[: len(path)] != path}
        lines[path] = cite
    if problems:
        raise ConfigError(problems)
    return validate(raw, lines, loaded.origin, loaded.base_dir, {path: cite for path, _, cite in values})


def validate(raw: dict, lines: dict, origin: str, base: Path, assigned: dict | None = None) -> LoadedConfig:
    loaded = LoadedConfig(None, raw, origin, base, lines, assigned=dict(assigned or {}))
    problems = _unknown_keys(raw, loaded)
    try:
        loaded.config = Config.model_validate(raw)
    except ValidationError as error:
        problems += _pydantic_problems(error, raw, loaded)
    if loaded.config is not None:
        problems += _check_values(loaded)
    loaded.problems = list(dict.fromkeys(problems))
    return loaded


def _unknown_keys(raw: Any, loaded: LoadedConfig, path: tuple = ()) -> list[Problem]:
    models = SECTIONS.get(path)
    if not models or not isinstance(raw, dict):
        return []
    allowed = list(dict.fromkeys(k for m in models for k in m.model_fields))
    problems = []
    for key, value in raw.items():
        if key not in allowed:
            hint = _elsewhere(str(key), path) or suggest(str(key), allowed) or ""
            problems.append(loaded.problem((*path, key), f"unknown key '{key}'.{hint} Valid keys here: {', '.join(allowed)}"))
        else:
            problems += _unknown_keys(value, loaded, (*path, key))
    return problems


# sections whose keys are a user's to choose (a split's file names) are no place to send a key to
_NOT_A_HOME = {("data", "split", name) for name in ("train", "val", "test")}


def _elsewhere(key: str, path: tuple) -> str:
    """' It belongs ...' when `key` is a key of another section (train.scheduler: a top-level key)."""
    homes = [where for where, models in SECTIONS.items() if where != path and where not in _NOT_A_HOME and any(key in m.model_fields for m in models)]
    if not homes:
        return ""
    where = min(homes, key=len)
    if where == ():
        order = list(Config.model_fields)
        at = order.index(key)
        beside = " and ".join(order[max(at - 1, 0) : at] + order[at + 1 : at + 2])
        return f" {key} is a top-level key, beside {beside}, not a key of {'.'.join(map(str, path))}: write {key}: at the start of a line ({key}=... on the command line)."
    return f" {key} belongs under {'.'.join(where)}: write it as {'.'.join(where)}.{key}."


_MESSAGES = {
    "missing": "required key is missing",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "dict_type": "expected a mapping of keys",
    "too_short": "expected at least {min_length} item(s)",
    "greater_than": "expected a number greater than {gt}",
    "greater_than_equal": "expected a number of at least {ge}",
    "less_than_equal": "expected a number of at most {le}",
    "less_than": "expected a number less than {lt}",
    "literal_error": "expected one of {expected}",
}


def _pydantic_problems(error: ValidationError, raw: dict, loaded: LoadedConfig) -> list[Problem]:
    grouped: dict[tuple, list[dict]] = {}
    for item in error.errors():
        if item["type"] == "extra_forbidden":
            continue  # reported by _unknown_keys, with suggestions
        grouped.setdefault(_raw_path(raw, item["loc"]), []).append(item)
    # a union's "wrong type" errors give way to a member's errors deeper in the same value
    deeper = {p[:n] for p in grouped for n in range(len(p))}
    problems = []
    for path, items in grouped.items():
        if path in deeper and all(i["type"] in _TYPE_ERRORS for i in items):
            continue
        messages = list(dict.fromkeys(_message(i, path) for i in items))
        text = " or ".join(m.removeprefix("expected ") if n else m for n, m in enumerate(messages))
        if items[0]["type"] != "missing":
            text += f"; found {_found(items[0]['input'])}"
        problems.append(loaded.problem(path, text))
    return problems


_TYPE_ERRORS = {"string_type", "model_type", "model_attributes_type", "dict_type", "list_type", "float_type", "int_type"}


def _message(item: dict, path: tuple) -> str:
    if item["type"] == "string_pattern_mismatch" and path[-1:] == ("device",):
        return "expected auto, cpu, cuda, cuda:N or mps"
    if item["type"] == "string_pattern_mismatch" and path == ("name",):
        return "expected a folder name for the run under train.out_dir, without / or \\ and not . or .."
    if item["type"] == "union_tag_invalid":
        return "expected ratios {train, val, test}, {column: NAME} or files {train: PATH, ...}"
    template = _MESSAGES.get(item["type"])
    if template is None:
        return item["msg"]
    return template.format(**(item.get("ctx") or {}))


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return repr(value)


def _raw_path(raw: Any, loc: tuple) -> tuple:
    """The key path of a pydantic error location, less the union member tags pydantic adds."""
    path, node = [], raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part[:1].islower() and part not in (
            "str", "ratios", "column", "files", "float", "int", "bool", "list", "dict"
        ):
            path.append(part)  # a missing key
            node = None
    return tuple(path)


def _check_values(loaded: LoadedConfig) -> list[Problem]:
    """What needs more than one key: split ratios, sources, the monitor's form."""
    config, problems = loaded.config, []
    data = config.data
    split = data.split
    if isinstance(split, Ratios):
        total = split.train + split.val + split.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            problems.append(loaded.problem(("data", "split"), f"the ratios must sum to 1, found {split.train} + {split.val} + {split.test} = {total:g}"))
        if split.train == 0:
            problems.append(loaded.problem(("data", "split", "train"), "the train ratio must be above 0"))
    if isinstance(split, Files):
        if data.source is not None:
            problems.append(loaded.problem(("data", "source"), "give either data.source or files in data.split, not both"))
    elif data.source is None:
        problems.append(loaded.problem(("data", "source"), "required key is missing: a table file (data/iris.csv), or {type: sql, url: ..., query: ...}"))
    if isinstance(split, ByColumn) and split.column == data.target:
        problems.append(loaded.problem(("data", "split", "column"), "the split column cannot be the target"))
    monitor = config.train.monitor
    if not monitor.startswith(("val_", "train_")):
        problems.append(loaded.problem(("train", "monitor"), f"expected val_loss or val_<metric> (val_accuracy, val_r2, ...), found '{monitor}'"))
    return problems

"""YAML in: the YAML 1.2 core schema (`1e-3` is a float), duplicate keys refused, every value's line kept."""

from __future__ import annotations

import re
from typing import Any

import yaml

from dltrain.errors import Problem

Path_ = tuple  # a key path: ("model", "layers", 0, "Linear")


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's core schema instead of YAML 1.1's resolvers."""


_CoreLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("merge", r"^<<$", "<"),
]:
    _CoreLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # YAML 1.2: 010 is ten, not eight


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


_CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_CoreLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_CoreLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


class YamlError(Exception):
    """YAML that cannot be read; carries the problems with their lines."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def load_yaml(text: str, origin: str) -> tuple[Any, dict[Path_, int]]:
    """Parse `text`; return the value and the 1-based line of every key path in it.

    `origin` names the text in messages: a file path, or "command line".
    """
    loader = _CoreLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        size = _expanded_size(node, {}, set())
        if size > MAX_VALUES:
            raise YamlError([Problem(origin, "", f"the YAML expands to more than {MAX_VALUES:,} values through its aliases (each *name a copy of what &name marks, aliases of aliases multiplying); a config holds hundreds")])
        lines: dict[Path_, int] = {(): node.start_mark.line + 1}
        problems: list[Problem] = []
        value = _walk(loader, node, (), lines, problems, origin)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{origin}:{mark.line + 1}" if mark and origin != "command line" else origin
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlError([Problem(where, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as error:
        raise YamlError([Problem(origin, "", f"YAML error: {error}")]) from None
    except RecursionError:
        raise YamlError([Problem(origin, "", "YAML nested too deeply, or an alias that contains itself (&a [*a])")]) from None
    finally:
        loader.dispose()
    if problems:
        raise YamlError(problems)
    return value, lines


MAX_VALUES = 100_000  # a config holds hundreds; aliases of aliases (a "billion laughs") hold billions


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values the document holds once every alias is copied out, counted without copying:
    each node once (an alias is the node it names, met again)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_:
        raise RecursionError  # an alias inside what it names (&a [*a])
    size = 1
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        open_.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        for child in children:
            size += _expanded_size(child, sizes, open_)
            if size > MAX_VALUES:
                break  # enough to refuse it: the rest is not counted
        open_.discard(id(node))
    sizes[id(node)] = size
    return size


def _walk(loader, node, path, lines, problems, origin) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                problems.append(
                    Problem(_where(origin, key_node), _dotted(path), "a key must be a plain value")
                )
                continue
            line = key_node.start_mark.line + 1
            if key in result:
                problems.append(
                    Problem(
                        _where(origin, key_node),
                        _dotted((*path, key)),
                        f"duplicate key (first given on line {lines[(*path, key)]})",
                    )
                )
                continue
            lines[(*path, key)] = line
            result[key] = _walk(loader, value_node, (*path, key), lines, problems, origin)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_walk(loader, item, (*path, index), lines, problems, origin))
        return items
    return loader.construct_object(node, deep=True)


def _where(origin: str, node: yaml.Node) -> str:
    return origin if origin == "command line" else f"{origin}:{node.start_mark.line + 1}"


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def dump_yaml(value: Any) -> str:
    """Write plain data as block YAML, keys in the order given."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=None, allow_unicode=True)

"""Components (layers, losses, optimizers, schedulers): the three config forms, registries, arguments.

A component is written as a name alone (`ReLU`), a one-key mapping (`Linear: 64`,
`Conv2d: {out_channels: 16, kernel_size: 3}`) or a mapping with `type`
(`{type: AdamW, lr: 0.001}`). Every form becomes a `Component`; a `Registry` maps its name to a
constructor, and `bind` turns its arguments into keyword arguments checked against the
constructor's signature before anything is built.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar


class ComponentError(ValueError):
    """A component that cannot be used; the message says what would be accepted.

    `path` is where the component stands in the config, so the caller can cite its line.
    """

    def __init__(self, message: str, path: tuple = ()):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple = ()  # positional arguments, after the ones dltrain infers
    kwargs: dict = field(default_factory=dict)
    path: tuple = ()  # where it stands in the config, for messages


def parse_component(value: Any, path: tuple = (), what: str = "component") -> Component:
    """Read one of the three forms into a Component."""
    if isinstance(value, str) and value.strip():
        return Component(value.strip(), (), {}, path)
    if isinstance(value, dict) and "type" in value:
        name = value["type"]
        if not isinstance(name, str):
            raise ComponentError(f"`type` must be a {what} name, found {name!r}")
        kwargs = {k: v for k, v in value.items() if k != "type"}
        _check_keys(kwargs)
        return Component(name, (), kwargs, path)
    if isinstance(value, dict) and len(value) == 1:
        ((name, arguments),) = value.items()
        if not isinstance(name, str):
            raise ComponentError(f"expected {_article(what)} {what} name as the key, found {name!r}")
        if arguments is None:
            return Component(name, (), {}, path)
        if isinstance(arguments, dict):
            _check_keys(arguments)
            return Component(name, (), dict(arguments), path)
        if isinstance(arguments, list):
            return Component(name, tuple(arguments), {}, path)
        return Component(name, (arguments,), {}, path)
    name, one_key, typed = _EXAMPLES.get(what, _EXAMPLES["layer"])
    raise ComponentError(
        f"expected {_article(what)} {what}: a name (`{name}`), a one-key mapping (`{one_key}`) "
        f"or a mapping with `type` (`{typed}`); found {_show(value)}"
    )


_EXAMPLES = {
    "layer": ("ReLU", "Linear: 64", "{type: Dropout, p: 0.2}"),
    "loss": ("CrossEntropyLoss", "HuberLoss: {delta: 0.5}", "{type: CrossEntropyLoss, label_smoothing: 0.1}"),
    "optimizer": ("Adam", "SGD: {lr: 0.1}", "{type: AdamW, lr: 0.001}"),
    "scheduler": ("CosineAnnealingLR", "StepLR: {step_size: 10}", "{type: StepLR, step_size: 10, gamma: 0.5}"),
}


def _check_keys(kwargs: dict) -> None:
    for key in kwargs:
        if not isinstance(key, str):
            raise ComponentError(f"argument names must be words, found {key!r}")


def _show(value: Any) -> str:
    if isinstance(value, dict) and len(value) > 1:
        return f"a mapping with {len(value)} keys ({', '.join(map(str, value))}) and no `type`"
    return repr(value)


def suggest(name: str, names: list[str], n: int = 3) -> str:
    """' Did you mean X?' for the names closest to `name`, or ''."""
    lowered = {candidate.lower(): candidate for candidate in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{lowered[c]}'" for c in close) + "?"


E = TypeVar("E")


class Registry(Generic[E]):
    """One plain mapping from name to entry per kind of thing; aliases resolve to names."""

    def __init__(
        self, kind: str, entries: dict[str, E], aliases: dict[str, str] | None = None, see_also: str = ""
    ):
        self.kind = kind
        self.see_also = see_also  # where the whole list is, for a name with no close match
        self.entries = dict(entries)
        self.aliases = dict(aliases or {})

    def names(self) -> list[str]:
        return sorted(self.entries)

    def resolve(self, name: str) -> str:
        """The canonical name of `name` (itself or the name an alias stands for)."""
        if name in self.entries:
            return name
        if name in self.aliases:
            return self.aliases[name]
        # case-insensitive aliases only: names are PyTorch's, case-sensitive
        alias = self.aliases.get(name.lower())
        if alias is not None:
            return alias
        wrong_case = [n for n in self.entries if n.lower() == name.lower()]
        if wrong_case:
            raise ComponentError(
                f"unknown {self.kind} '{name}'. Names are case-sensitive: did you mean '{wrong_case[0]}'?"
            )
        hint = suggest(name, list(self.entries)) or suggest(name, list(self.aliases))
        if not hint:
            shown = self.names()
            listing = ", ".join(shown[:30]) + (", ..." if len(shown) > 30 else "")
            plural = self.kind + ("es" if self.kind.endswith("s") else "s")
            hint = f" Known {plural}: {listing}.{self.see_also}"
        raise ComponentError(f"unknown {self.kind} '{name}'.{hint}")

    def get(self, name: str) -> E:
        return self.entries[self.resolve(name)]


@dataclass(frozen=True)
class Signature:
    """The arguments a constructor takes, less the ones dltrain passes itself."""

    params: tuple[inspect.Parameter, ...]
    var_positional: bool
    var_keyword: bool

    @classmethod
    def of(cls, factory: Callable, skip: tuple[str, ...] = ()) -> Signature:
        params = [p for p in inspect.signature(factory).parameters.values() if p.name != "self"]
        return cls(
            tuple(p for p in params if p.name not in skip and p.kind in _NAMED),
            any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params),
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
        )


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def bind(
    component: Component,
    signature: Signature,
    inferred: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> tuple[list, dict[str, Any]]:
    """Map a component's arguments onto `signature`: return (extra positional, keyword arguments).

    `inferred` names the arguments dltrain fills (the input size of a layer): they may not be
    given. `optional` names arguments dltrain fills only when absent (OneCycleLR's total_steps).
    Raises ComponentError naming the argument and what the constructor accepts.
    """
    what = f"{component.name}"
    positional_params = [
        p
        for p in signature.params
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in inferred
    ]
    kwargs: dict[str, Any] = {}
    extra: list = []
    for index, value in enumerate(component.args):
        if index < len(positional_params):
            kwargs[positional_params[index].name] = value
        elif signature.var_positional:
            extra.append(value)
        else:
            names = ", ".join(p.name for p in positional_params) or "none"
            raise ComponentError(
                f"{what} takes at most {len(positional_params)} positional argument(s) "
                f"({names}), found {len(component.args)}: {list(component.args)!r}"
            )
    known = {p.name for p in signature.params}
    for key, value in component.kwargs.items():
        if key in inferred:
            raise ComponentError(
                f"{what}: `{key}` is inferred by dltrain from the layer before; leave it out"
            )
        if key not in known and not signature.var_keyword:
            hint = suggest(key, sorted(known - set(inferred)))
            raise ComponentError(
                f"{what} has no argument '{key}'.{hint} It takes: {signature_text(signature, inferred)}"
            )
        if key in kwargs:
            raise ComponentError(f"{what}: argument '{key}' is given twice (by position and by name)")
        kwargs[key] = value
    params = {p.name: p for p in signature.params}
    for key, value in kwargs.items():
        if key in params:
            expected = _expected(params[key].annotation)
            if expected is not None and value != "auto" and not _accepts(expected, value):  # auto: dltrain fills it
                raise ComponentError(f"{what}: argument '{key}' takes {_describe(expected)}, found {value!r}")
    missing = [
        p.name
        for p in signature.params
        if p.default is inspect.Parameter.empty
        and p.name not in kwargs
        and p.name not in inferred
        and p.name not in optional
    ]
    if missing:
        raise ComponentError(
            f"{what} needs argument(s) {', '.join(missing)}. It takes: {signature_text(signature, inferred)}"
        )
    return extra, kwargs


_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


def _expected(annotation: Any) -> set | None:
    """What an argument's annotation allows, as kinds we can check ('int', 'float', 'bool', 'str',
    'tuple', 'none'); None when the annotation is something we do not check (then anything goes)."""
    import types
    import typing

    import torch

    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        if text in _KINDS:
            return {text}
        if text.startswith(("Iterable[", "Sequence[", "list[", "tuple[", "List[", "Tuple[")):
            return {"tuple"}
        return None
    if annotation in (int, float, bool, str):
        return {annotation.__name__}
    if annotation is type(None):
        return {"none"}
    if annotation is torch.Tensor:
        return {"tuple"}  # a list of numbers becomes a tensor
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds: set = set()
        for member in typing.get_args(annotation):
            allowed = _expected(member)
            if allowed is None:
                return None
            kinds |= allowed
        return kinds
    if origin in (tuple, list) or (origin is not None and getattr(origin, "__name__", "") in ("Iterable", "Sequence")):
        return {"tuple"}
    if origin is typing.Literal:
        return {"str"} if all(isinstance(a, str) for a in typing.get_args(annotation)) else None
    return None


def _accepts(kinds: set, value: Any) -> bool:
    if value is None:
        return True  # None means the constructor's own default in most of torch
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return bool(kinds & {"int", "float"})
    if isinstance(value, float):
        return "float" in kinds or ("int" in kinds and value.is_integer())
    if isinstance(value, str):
        return "str" in kinds
    if isinstance(value, (list, tuple)):
        return "tuple" in kinds
    return True


def _describe(kinds: set) -> str:
    names = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a name", "tuple": "a list", "none": "null"}
    order = ["int", "float", "bool", "str", "tuple", "none"]
    if {"int", "float"} <= kinds:
        kinds = kinds - {"int"}
    return " or ".join(names[k] for k in order if k in kinds)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def to_argument(value: Any, annotation: Any = inspect.Parameter.empty) -> Any:
    """A config value as a constructor takes it: lists as tuples, or as a tensor for a Tensor argument
    (a loss's class weights)."""
    if isinstance(value, (list, tuple)):
        if _is_tensor(annotation):
            import torch

            return torch.tensor(value, dtype=torch.float32)
        return tuple(to_argument(v) for v in value)
    return value


def _is_tensor(annotation: Any) -> bool:
    """True for `Tensor` and `Optional[Tensor]`, not for tuples of them."""
    import types
    import typing

    import torch

    if annotation is torch.Tensor:
        return True
    if isinstance(annotation, str):
        text = annotation.replace("torch.", "").replace(" ", "")
        return text in ("Tensor", "Optional[Tensor]", "Tensor|None", "None|Tensor")
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and args == [torch.Tensor]


def construct(
    component: Component,
    factory: Callable,
    signature: Signature,
    leading: tuple = (),
    inferred: tuple[str, ...] = (),
    filled: dict | None = None,
) -> Any:
    """Build a component with its arguments bound and converted.

    `leading` are positional arguments dltrain passes first (an optimizer's parameters), named in
    `inferred` so that a config cannot give them; `filled` are values dltrain fills where the
    config leaves them out (a schedule's length). A constructor's own check of its values (a
    negative rate, a size it refuses) is a ComponentError with the first line of its message.
    """
    filled = filled or {}
    extra, kwargs = bind(component, signature, inferred, tuple(filled))
    kwargs = {**filled, **kwargs}
    annotations = {p.name: p.annotation for p in signature.params}
    values = {k: to_argument(v, annotations.get(k, inspect.Parameter.empty)) for k, v in kwargs.items()}
    try:
        return factory(*leading, *extra, **values)
    except ComponentError:
        raise
    except Exception as error:  # torch's constructors raise TypeError, ValueError, IndexError, RuntimeError...
        from dltrain.errors import first_line

        raise ComponentError(f"{component.name}: {first_line(error)}", component.path) from None


def signature_text(signature: Signature, inferred: tuple[str, ...] = ()) -> str:
    parts = []
    for p in signature.params:
        if p.name in inferred:
            continue
        parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts) or "no arguments"

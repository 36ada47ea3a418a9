"""Layers -> `nn.Sequential`, each layer's input size inferred from the shape the one before gives."""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dltrain.components import Component, ComponentError, bind, parse_component, to_argument
from dltrain.errors import first_line
from dltrain.model.registry import LayerEntry, layer_registry
from dltrain.task import InputSpec

AUTO = "auto"


@dataclass(frozen=True)
class LayerInfo:
    """One row of the model table: the layer as built, its output shape and parameter count."""

    name: str
    arguments: dict[str, Any]
    output_shape: tuple[int, ...]
    parameters: int
    depth: int = 0  # 1 inside a Residual
    positional: tuple = ()  # arguments given by position beyond the named ones (Reshape's shape)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "output_shape": list(self.output_shape),
            "parameters": self.parameters,
            "depth": self.depth,
            "positional": list(self.positional),
        }


def parse_layers(values: list, path: tuple = ("model", "layers")) -> list[Component]:
    """Parse and check every layer against the registry and its constructor; all errors raised at once."""
    components, errors = [], []
    for index, value in enumerate(values):
        try:
            component = parse_component(value, (*path, index), "layer")
            entry = layer_registry().get(component.name)
            if entry.name == "Residual":
                if not component.args or component.kwargs:
                    raise ComponentError("Residual takes a list of layers: `Residual: [{Linear: 64}, ReLU]`")
                inner = parse_layers(list(component.args), (*path, index, component.name))
                component = Component(entry.name, tuple(inner), {}, component.path)
            else:
                bind(component, entry.signature, tuple(entry.infer))
            components.append(component)
        except LayerErrors as error:
            errors.extend(error.errors)
        except ComponentError as error:
            errors.append(ComponentError(str(error), (*path, index)))
    if errors:
        raise LayerErrors(errors)
    return components


class LayerErrors(ComponentError):
    """Several layers that cannot be built, each with its path."""

    def __init__(self, errors: list[ComponentError]):
        super().__init__("; ".join(map(str, errors)), errors[0].path)
        self.errors = errors


def build_model(
    components: list[Component], spec: InputSpec, output_size: int
) -> tuple[nn.Sequential, list[LayerInfo]]:
    """Build the layers in order; `auto` means `output_size`. Raises ComponentError with the layer's path."""
    modules, table, shape, dtype = _build_sequence(components, spec, output_size, depth=0)
    model = nn.Sequential(*modules)
    model.train()
    if shape != (output_size,):
        last = components[-1].path if components else ("model", "layers")
        hint = ""
        if len(shape) > 1:
            hint = " Add `Flatten` before the last Linear layers to turn it into one vector per sample."
        elif shape and shape[0] != output_size:
            hint = f" Make the last layer give {output_size} (write `auto` and dltrain fills it in)."
        raise ComponentError(
            f"the model gives {_show(shape)} per batch, but the loss and target need "
            f"(batch, {output_size}).{hint}",
            last,
        )
    return model, table


BYTES_PER_PARAMETER = 16  # training holds each float32 weight, its gradient and Adam's two moments


def memory_limit() -> int:
    """The bytes this process may use: the least of the memory available, the cgroup's limit and
    the address-space limit (ulimit -v)."""
    limits = []
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        text = open("/sys/fs/cgroup/memory.max").read().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return 2**62
    return min(limits)


class _Budget:
    """The model's parameters so far, against the memory that training them takes: a layer that
    would not fit is a ComponentError naming it, before its weights are allocated."""

    def __init__(self):
        self.total = 0
        self.limit = memory_limit()

    def add(self, count: int, name: str, path: tuple) -> None:
        self.total += count
        if self.total * BYTES_PER_PARAMETER > self.limit:
            raise ComponentError(
                f"{name} has {count:,} parameters, which makes the model {self.total:,}: about "
                f"{self.total * BYTES_PER_PARAMETER / 2**30:,.1f} GB to train (each weight, its gradient and the "
                f"optimizer's state), more than the {self.limit / 2**30:,.1f} GB of memory this process may use. Make the layer smaller",
                path,
            )


def _build_sequence(components, spec: InputSpec, output_size: int, depth: int, budget: _Budget | None = None):
    budget = budget or _Budget()
    modules: list[nn.Module] = []
    table: list[LayerInfo] = []
    shape, dtype = tuple(spec.shape), spec.dtype
    for component in components:
        entry = layer_registry().get(component.name)
        if entry.name == "Residual":
            inner, inner_table, inner_shape, _ = _build_sequence(
                component.args, InputSpec(shape, dtype, spec.vocab_size), output_size, depth + 1, budget
            )
            if inner_shape != shape:
                raise ComponentError(
                    f"Residual's layers turn {_show(shape)} into {_show(inner_shape)}; their output "
                    "must have the shape of their input so that the two can be added",
                    component.path,
                )
            module = entry.factory(*inner)
            extra, arguments = [], {}
        else:
            extra, arguments = _arguments(entry, component, shape, dtype, spec, output_size)
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Initializing zero-element tensors")  # said plainly below
                    with torch.device("meta"):  # its parameters counted from their shapes: nothing allocated
                        probe = entry.factory(*extra, **_constructor_values(entry, arguments))
            except (TypeError, ValueError, RuntimeError) as error:
                raise ComponentError(f"{entry.name}: {first_line(error)}", component.path) from None
            budget.add(sum(p.numel() for p in probe.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)), entry.name, component.path)  # a lazy layer's are sized by its first batch
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                    module = entry.factory(*extra, **_constructor_values(entry, arguments))
            except (TypeError, ValueError, RuntimeError) as error:  # out of memory too: this layer's
                raise ComponentError(f"{entry.name}: {first_line(error)}", component.path) from None
        out = _dry_run(module, shape, dtype, component)
        if 0 in out.shape[1:]:
            raise ComponentError(f"{entry.name} gives {_show(tuple(out.shape[1:]))} per row: nothing to learn from; every size must be at least 1", component.path)
        table.append(
            LayerInfo(
                entry.name,
                arguments,
                tuple(out.shape[1:]),
                sum(p.numel() for p in module.parameters()),
                depth,
                tuple(extra),
            )
        )
        if entry.name == "Residual":
            table[-1:] = [table[-1], *inner_table]
        modules.append(module)
        shape, dtype = tuple(out.shape[1:]), "long" if not out.is_floating_point() else "float"
        spec = InputSpec(shape, dtype, spec.vocab_size if dtype == "long" else None)
    return modules, table, shape, dtype


def _arguments(entry: LayerEntry, component: Component, shape, dtype, spec: InputSpec, output_size: int):
    """Extra positional and keyword arguments: defaults, the user's (`auto` filled), the inferred."""
    extra, given = bind(component, entry.signature, tuple(entry.infer))
    extra = [output_size if v == AUTO else _plain(v) for v in extra]
    arguments = {key: _infer(rule, entry.name, shape, dtype, spec, component) for key, rule in entry.infer.items()}
    arguments.update(entry.defaults)
    for key, value in given.items():
        arguments[key] = output_size if value == AUTO else _plain(value)
    return extra, arguments


def _infer(rule: str, name: str, shape, dtype, spec: InputSpec, component: Component) -> int:
    if rule == "vocab":
        if dtype != "long" or spec.vocab_size is None:
            raise ComponentError(
                f"{name} takes token ids, but its input is {_show(shape)} {dtype} values: "
                "put it first, right after a text input",
                component.path,
            )
        return spec.vocab_size
    if dtype == "long":
        raise ComponentError(
            f"{name} takes numbers, but its input is token ids: start the model with Embedding",
            component.path,
        )
    if not shape:
        raise ComponentError(f"{name} cannot take a scalar per sample", component.path)
    return shape[-1] if rule == "last" else shape[0]


def _constructor_values(entry: LayerEntry, arguments: dict) -> dict:
    """Lists become tuples, or tensors where the constructor's argument is a tensor."""
    params = {p.name: p for p in entry.signature.params}
    values = {}
    for key, value in arguments.items():
        annotation = params[key].annotation if key in params else inspect.Parameter.empty
        values[key] = to_argument(value, annotation)
    return values


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _dry_run(module: nn.Module, shape, dtype, component: Component) -> torch.Tensor:
    """Carry a zero batch of two through the layer to learn its output shape."""
    x = torch.zeros((2, *shape), dtype=torch.long if dtype == "long" else torch.float32)
    module.eval()
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as error:  # any torch error here means the layer does not fit its input
        raise ComponentError(
            f"{component.name} cannot take the input the layer before gives, {_show(shape)}: "
            f"{first_line(error)}",
            component.path,
        ) from None
    finally:
        module.train()
    if not isinstance(out, torch.Tensor):
        raise ComponentError(
            f"{component.name} returns {type(out).__name__}, not one tensor; dltrain chains layers "
            "that take one tensor and give one",
            component.path,
        )
    return out


def _show(shape) -> str:
    return "(batch, " + ", ".join(map(str, shape)) + ")" if shape else "(batch,)"

"""The JSON Schema (draft 2020-12) of the config format, for editors and `dltrain schema`.

Generated from the definitions that validate configs: the pydantic models for the keys, and the
registries (layers, losses, optimizers, schedulers, column types, metrics, sources) with each
constructor's own arguments and defaults.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from dltrain.components import Registry, Signature


def _default(value: Any) -> Any:
    """A default as JSON, or None when it has no JSON form (a tensor, a callable)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return None


def _summary(factory) -> str:
    doc = (inspect.getdoc(factory) or "").strip().split("\n\n")[0].replace("\n", " ")
    doc = re.sub(r":(?:math|class|func|attr|meth):`~?([^`]+)`", r"\1", doc)
    return re.sub(r"``?([^`]+)``?", r"\1", doc)[:240]


def _arguments(signature: Signature, leave_out: tuple[str, ...], extra: dict | None = None) -> dict:
    properties = {}
    for parameter in signature.params:
        if parameter.name in leave_out:
            continue
        entry: dict = {}
        if parameter.annotation is not inspect.Parameter.empty:
            entry["description"] = str(parameter.annotation).replace("typing.", "")
        if parameter.default is not inspect.Parameter.empty:
            default = _default(parameter.default)
            if default is not None or parameter.default is None:
                entry["default"] = default
        properties[parameter.name] = entry
    properties.update(extra or {})
    return {"type": "object", "properties": properties, "additionalProperties": signature.var_keyword}


def component(registry: Registry, entries: dict, extra: dict | None = None) -> dict:
    """The three forms of a component: `Name`, `{Name: arguments}`, `{type: Name, ...}`."""
    names = sorted(set(registry.entries) | set(registry.aliases))
    one_key = {}
    for name in names:
        signature, leave_out, summary, value = entries[registry.resolve(name)]
        arguments = _arguments(signature, leave_out, extra)
        one_key[name] = {"description": summary, "anyOf": [{"type": "null"}, {"type": ["number", "string", "boolean"]}, {"type": "array"}, value or arguments]}
    return {
        "anyOf": [
            {"type": "string", "enum": names},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": one_key, "additionalProperties": False},
            {"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "enum": names}}, "additionalProperties": True},
        ]
    }


def config_schema() -> dict:
    from dltrain.config.schema import DEFAULT_OPTIMIZER, Config
    from dltrain.data.encoders import ENCODERS
    from dltrain.data.sources import SOURCES
    from dltrain.model.registry import layer_registry
    from dltrain.train.losses import loss_registry
    from dltrain.train.metrics import METRICS
    from dltrain.train.optim import optimizer_registry, scheduler_registry

    schema = Config.model_json_schema()
    defs = schema["$defs"]
    layers = layer_registry()
    layer_entries = {}
    for name, entry in layers.entries.items():
        value = {"type": "array", "items": {"$ref": "#/$defs/layer"}} if name == "Residual" else None
        layer_entries[name] = (entry.signature, tuple(entry.infer), _summary(entry.factory), value)
    defs["layer"] = component(layers, layer_entries)
    losses = loss_registry()
    defs["loss"] = component(losses, {n: (e.signature, (), _summary(e.factory), None) for n, e in losses.entries.items()})
    optimizers = optimizer_registry()
    defs["optimizer"] = component(optimizers, {n: (e.signature, e.inferred, _summary(e.factory), None) for n, e in optimizers.entries.items()})
    schedulers = scheduler_registry()
    interval = {"interval": {"enum": ["epoch", "step"], "default": "epoch", "description": "step the scheduler once per epoch or per optimizer step"}}
    defs["scheduler"] = component(
        schedulers, {n: (e.signature, e.inferred, _summary(e.factory), None) for n, e in schedulers.entries.items()}, interval
    )
    properties = schema["properties"]
    defs["Model"]["properties"]["layers"]["items"] = {"$ref": "#/$defs/layer"}
    properties["loss"] = {"$ref": "#/$defs/loss", "description": properties["loss"].get("description", "")}
    properties["optimizer"] = {"$ref": "#/$defs/optimizer", "description": properties["optimizer"].get("description", ""), "default": DEFAULT_OPTIMIZER}
    properties["scheduler"] = {"anyOf": [{"$ref": "#/$defs/scheduler"}, {"type": "null"}], "description": properties["scheduler"].get("description", "")}
    # columns: their types and every type's options
    options = {
        "positive": {"description": "binary: the value that is 1"},
        "size": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2, "description": "image, video: [height, width]"},
        "channels": {"enum": [1, 3], "description": "image, video: 1 (grayscale) or 3 (RGB)"},
        "augment": {"type": "array", "description": "image: augmentations of training batches, e.g. [hflip, {rotate: 15}]"},
        "tokenizer": {"enum": ["word", "char"], "default": "word", "description": "text"},
        "lowercase": {"type": "boolean", "default": True, "description": "text"},
        "min_freq": {"type": "integer", "minimum": 1, "default": 1, "description": "text: the fewest times a token must appear"},
        "max_tokens": {"type": "integer", "minimum": 1, "description": "text: the largest vocabulary"},
        "max_length": {"type": "integer", "minimum": 1, "description": "text, sequence: values per row"},
        "sample_rate": {"type": "integer", "minimum": 1, "description": "audio: resampled to this"},
        "duration": {"type": "number", "exclusiveMinimum": 0, "description": "audio: seconds, padded or cut"},
        "n_fft": {"type": "integer", "minimum": 1, "default": 512, "description": "audio"},
        "hop_length": {"type": "integer", "minimum": 1, "description": "audio; default n_fft / 4"},
        "frames": {"type": "integer", "minimum": 1, "description": "video: frames sampled evenly"},
        "transform": {"enum": ["log", "quantile"], "description": "numeric: log1p then standardized, or normal scores of the training quantiles"},
        "encoding": {
            "anyOf": [
                {"enum": ["piecewise_linear", "periodic"]},
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["piecewise_linear", "periodic"]},
                        "bins": {"type": "integer", "minimum": 2, "default": 16, "description": "piecewise_linear: the features"},
                        "frequencies": {"type": "integer", "minimum": 1, "default": 8, "description": "periodic: features are twice this"},
                        "sigma": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "periodic: the frequencies' std"},
                    },
                    "additionalProperties": False,
                },
            ],
            "description": "numeric: several features per value (piecewise_linear: bins wide; periodic: 2 * frequencies)",
        },
    }
    known = {o for e in ENCODERS.entries.values() for o in e.options}
    assert known <= set(options), f"options without a schema: {known - set(options)}"
    column = defs["Column"]
    column["properties"]["type"] = {"anyOf": [{"enum": ENCODERS.names()}, {"type": "null"}], "description": "inferred when not given"}
    column["properties"].update({k: v for k, v in options.items() if k in known})
    column["additionalProperties"] = False
    defs["Source"]["properties"]["type"] = {"anyOf": [{"enum": SOURCES.names()}, {"type": "null"}], "description": "default: from the extension"}
    metric_names = METRICS.names()
    train = defs["Train"]["properties"]
    train["metrics"] = {"anyOf": [{"type": "array", "items": {"enum": metric_names}}, {"type": "null"}], "description": "default: by task"}
    train["monitor"]["enum"] = [f"{split}_{m}" for split in ("val", "train") for m in ["loss", *metric_names]]
    tune = defs["Tune"]["properties"]
    choices = {"type": "array", "minItems": 1, "description": "choices: numbers, text, or whole mappings (an optimizer)"}
    value_range = {
        "type": "object",
        "required": ["low", "high"],
        "properties": {
            "low": {"type": "number"},
            "high": {"type": "number"},
            "log": {"type": "boolean", "default": False, "description": "sample on a log scale (low > 0)"},
            "step": {"type": "number", "exclusiveMinimum": 0, "description": "values on a grid; whole numbers when low, high and step are"},
        },
        "additionalProperties": False,
    }
    tune["space"]["additionalProperties"] = {"anyOf": [choices, value_range]}
    tune["space"]["minProperties"] = 1
    tune["metric"] = {"anyOf": [{"enum": train["monitor"]["enum"]}, {"type": "null"}], "description": tune["metric"].get("description", "")}
    pruners = ["median", "hyperband", "none"]
    tune["pruner"] = {
        "anyOf": [{"enum": pruners}, {"type": "object", "required": ["type"], "properties": {"type": {"enum": pruners}}, "additionalProperties": True}],
        "default": "median",
        "description": tune["pruner"].get("description", ""),
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://dltrain.dev/schema/config.json", **schema}

"""The layer registry: every usable `torch.nn` module by its own name, plus dltrain's own layers.

Each entry says which constructor argument dltrain infers from the shape of the layer before,
and how: `last` (the last dimension), `channels` (dimension 1, as PyTorch lays out images and
sequences for convolutions) or `vocab` (the vocabulary size of a text input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from torch import nn

from dltrain.components import Registry, Signature
from dltrain.model import layers as own


@dataclass(frozen=True)
class LayerEntry:
    name: str
    factory: Callable[..., nn.Module]
    infer: dict[str, str] = field(default_factory=dict)  # argument name -> rule
    defaults: dict = field(default_factory=dict)  # dltrain's defaults where PyTorch's do not fit
    own: bool = False

    @property
    def signature(self) -> Signature:
        return _signature(self.factory)

    @property
    def summary(self) -> str:
        doc = (self.factory.__doc__ or "").strip().splitlines()
        return doc[0].strip() if doc else ""


@cache
def _signature(factory: Callable) -> Signature:
    return Signature.of(factory, skip=("device", "dtype"))  # dltrain places the model itself


_LAST = "last"
_CHANNELS = "channels"
_VOCAB = "vocab"

_INFER: dict[str, dict[str, str]] = {
    "Linear": {"in_features": _LAST},
    "LayerNorm": {"normalized_shape": _LAST},
    "RMSNorm": {"normalized_shape": _LAST},
    "TransformerEncoderLayer": {"d_model": _LAST},
    "Embedding": {"num_embeddings": _VOCAB},
    "EmbeddingBag": {"num_embeddings": _VOCAB},
    "GroupNorm": {"num_channels": _CHANNELS},
    **{f"Conv{d}d": {"in_channels": _CHANNELS} for d in (1, 2, 3)},
    **{f"ConvTranspose{d}d": {"in_channels": _CHANNELS} for d in (1, 2, 3)},
    **{f"BatchNorm{d}d": {"num_features": _CHANNELS} for d in (1, 2, 3)},
    **{f"InstanceNorm{d}d": {"num_features": _CHANNELS} for d in (1, 2, 3)},
}

_DEFAULTS: dict[str, dict] = {"TransformerEncoderLayer": {"batch_first": True}}

# Modules that do not take one tensor and give one tensor, or that are not layers.
_EXCLUDED = {
    "Module", "Container", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
    "ParameterDict", "DataParallel", "SyncBatchNorm", "RNNBase", "RNNCellBase", "RNNCell",
    "LSTMCell", "GRUCell", "MultiheadAttention", "Transformer", "TransformerEncoder",
    "TransformerDecoder", "TransformerDecoderLayer", "Bilinear", "CosineSimilarity",
    "PairwiseDistance", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "AdaptiveLogSoftmaxWithLoss",
}  # fmt: skip

_OWN = {
    "Flatten": nn.Flatten,  # torch's own already flattens all but the batch dimension
    "Reshape": own.Reshape,
    "Transpose": own.Transpose,
    "Residual": own.Residual,
    "RNN": own.RNN,
    "LSTM": own.LSTM,
    "GRU": own.GRU,
}
_OWN_INFER = {"RNN": {"input_size": _LAST}, "LSTM": {"input_size": _LAST}, "GRU": {"input_size": _LAST}}


@cache
def layer_registry() -> Registry[LayerEntry]:
    entries: dict[str, LayerEntry] = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, nn.Module)
            and not issubclass(obj, nn.modules.loss._Loss)
            and name not in _EXCLUDED
            and not name.startswith("_")
        ):
            entries[name] = LayerEntry(name, obj, _INFER.get(name, {}), _DEFAULTS.get(name, {}))
    for name, factory in _OWN.items():
        entries[name] = LayerEntry(name, factory, _OWN_INFER.get(name, {}), own=True)
    return Registry("layer", entries, see_also=" `dltrain layers` lists them all.")


@dataclass(frozen=True)
class Argument:
    name: str
    default: object  # inspect.Parameter.empty when required
    inferred: bool  # dltrain fills it from the layer before

    @property
    def required(self) -> bool:
        import inspect

        return self.default is inspect.Parameter.empty and not self.inferred

    def text(self) -> str:
        if self.inferred:
            return f"{self.name} (inferred)"
        return self.name if self.required else f"{self.name}={self.default!r}"


def describe_layer(name: str) -> tuple[LayerEntry, list[Argument]]:
    """A layer's entry and its arguments (ComponentError with suggestions for an unknown name)."""
    entry = layer_registry().get(name)
    arguments = [Argument(p.name, p.default, p.name in entry.infer) for p in entry.signature.params]
    return entry, arguments

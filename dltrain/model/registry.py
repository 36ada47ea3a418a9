"""The layer registry: every usable `torch.nn` module by its own name, plus dltrain's own layers.

Each entry says which constructor argument dltrain infers from the shape of the layer before,
and how: `last` (the last dimension), `channels` (dimension 1, as PyTorch lays out images and
sequences for convolutions) or `vocab` (the vocabulary size of a text input).
"""

from __future__ import annotations

import inspect
import re
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
        """The first sentence of the docstring, as plain text (no Sphinx markup), at most about 100 characters."""
        return shorten(self.description if self.own else first_sentence(self.description), 100)

    @property
    def description(self) -> str:
        """The docstring's first paragraph, as plain text."""
        return _docstring(self.factory).description

    @property
    def argument_docs(self) -> dict[str, str]:
        """Each argument's description from the docstring's Args section, as plain text."""
        wrapped = getattr(self.factory, "rnn_class", None)  # dltrain's RNN, LSTM, GRU: torch's words for the same arguments
        inherited = _docstring(wrapped).arguments if wrapped is not None else {}
        return {**inherited, **_docstring(self.factory).arguments, **_OWN_ARGUMENTS.get(self.name, {})}


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


_RETURN_SEQUENCES = (
    "true: the output at every step, (batch, length, hidden × directions); false: the last layer's "
    "final state, (batch, hidden × directions)"
)
_OWN_ARGUMENTS: dict[str, dict[str, str]] = {
    **{name: {"return_sequences": _RETURN_SEQUENCES} for name in ("RNN", "LSTM", "GRU")},
    "Transpose": {"dim0": "one dimension, counted as PyTorch counts them (0 is the batch)", "dim1": "the other dimension"},
}

_RULES = {
    _LAST: "inferred: the size of the last dimension of the layer before (or of the input)",
    _CHANNELS: "inferred: the channels of the layer before (its first dimension after the batch)",
    _VOCAB: "inferred: the vocabulary size of the text column (the data's vocab_size)",
}


@dataclass(frozen=True)
class Argument:
    name: str
    default: object  # inspect.Parameter.empty when required
    inferred: bool  # dltrain fills it from the layer before
    rule: str = ""  # how dltrain infers it: last, channels or vocab
    description: str = ""  # from the docstring, plain text
    many: bool = False  # *args: Residual's layers, Reshape's shape

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty and not self.inferred

    @property
    def note(self) -> str:
        """What `dltrain layers NAME` says of it: how it is inferred, or that it is required."""
        if self.inferred:
            return _RULES.get(self.rule, "inferred from the layer before")
        return "required" if self.required else ""

    def text(self) -> str:
        if self.inferred:
            return f"{self.name} (inferred)"
        return self.name if self.required else f"{self.name}={self.default!r}"


# dltrain's own layers that take a list (*args): what the list is
_MANY = {
    "Residual": "the layers whose output is added to the input, a list as in model.layers",
    "Reshape": "the new shape of one sample (the batch dimension is kept); -1 is allowed",
}


def describe_layer(name: str) -> tuple[LayerEntry, list[Argument]]:
    """A layer's entry and its arguments (ComponentError with suggestions for an unknown name).

    Private arguments (`_weight`, `_freeze`) are left out: a config has no use for them.
    """
    entry = layer_registry().get(name)
    docs = entry.argument_docs
    arguments = [
        Argument(p.name, entry.defaults.get(p.name, p.default), p.name in entry.infer, entry.infer.get(p.name, ""), docs.get(p.name, ""))
        for p in entry.signature.params
        if not p.name.startswith("_")
    ]
    if entry.own and entry.signature.var_positional:
        for p in inspect.signature(entry.factory).parameters.values():
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                arguments.insert(0, Argument(p.name, inspect.Parameter.empty, False, "", _MANY.get(name, ""), many=True))
    return entry, arguments


# ---- examples: a layer as a config writes it in model.layers

# a value for each argument an example needs (the required ones, and a few optional ones worth showing)
_EXAMPLE_VALUES: dict[str, object] = {
    "out_features": 64,
    "out_channels": 16,
    "kernel_size": 3,
    "hidden_size": 64,
    "embedding_dim": 32,
    "num_heads": 4,
    "nhead": 4,
    "output_size": 1,
    "groups": 2,
    "padding": 1,
    "value": 0.0,
    "size": 2,
    "num_groups": 2,
    "norm_type": 2,
    "upscale_factor": 2,
    "downscale_factor": 2,
    "threshold": 0.1,
    "dim0": 1,
    "dim1": 2,
    "dim": 1,
    "unflattened_size": [2, 4],
}
# optional arguments an example shows when the layer needs nothing else
_OPTIONAL_EXAMPLES: dict[str, object] = {"p": 0.2, "dim": 1, "scale_factor": 2, "negative_slope": 0.1}
# layers whose example is not the rule's
_LAYER_EXAMPLES: dict[str, dict[str, object]] = {
    **{f"{kind}Pool{d}d": {"kernel_size": 2} for kind in ("Max", "Avg") for d in (1, 2, 3)},
    **{f"LPPool{d}d": {"norm_type": 2, "kernel_size": 2} for d in (1, 2, 3)},
    **{f"FractionalMaxPool{d}d": {"kernel_size": 2, "output_ratio": 0.5} for d in (2, 3)},
    "Fold": {"output_size": [4, 4], "kernel_size": 2},
}
_MANY_EXAMPLES: dict[str, list] = {"Residual": [{"Linear": 64}, "ReLU"], "Reshape": [1, 28, 28]}


def flow(value: object) -> str:
    """A value in YAML's flow style, as a config line writes it: [16, 3], {p: 0.2}, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def layer_examples(name: str) -> list[str]:
    """The layer as a line of model.layers, short form first: `Conv2d: [16, 3]`, then by name:
    `Conv2d: {out_channels: 16, kernel_size: 3}`. Inferred arguments are left out (dltrain fills them)."""
    entry, arguments = describe_layer(name)
    many = [a for a in arguments if a.many]
    if many:
        return [f"{name}: {flow(_MANY_EXAMPLES.get(name, ['...']))}"]
    fixed = _LAYER_EXAMPLES.get(name, {})
    required = [a for a in arguments if a.required]
    if set(fixed) - {a.name for a in required}:  # it needs an optional argument too: by name only
        return [f"{name}: {flow(fixed)}"]
    if not required:
        optional = next((a for a in arguments if not a.inferred and a.name in _OPTIONAL_EXAMPLES), None)
        lines = [name]
        if optional is not None:
            lines.append(f"{name}: {flow({optional.name: _OPTIONAL_EXAMPLES[optional.name]})}")
        return lines
    values = {a.name: fixed.get(a.name, _EXAMPLE_VALUES.get(a.name, f"<{a.name}>")) for a in required}
    named = f"{name}: {flow(values)}"
    positional = [p.name for p in entry.signature.params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in entry.infer]
    if positional[: len(values)] != list(values):  # a required keyword-only argument: by name only
        return [named]
    short = flow(next(iter(values.values()))) if len(values) == 1 else flow(list(values.values()))
    return [f"{name}: {short}", named]


# ---- docstrings as plain text: torch's are Sphinx reStructuredText


@dataclass(frozen=True)
class _Doc:
    description: str
    arguments: dict[str, str]


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword args|Shape|Attributes|Examples?|Notes?|Warnings?|Returns|Inputs?|Outputs?|Variables|See also|References?)\s*::?\s*$", re.I)
_ARGUMENT_SECTIONS = ("args", "arguments", "parameters", "keyword args")
_DIRECTIVE = re.compile(r"^\.\.\s")
_ARGUMENT = re.compile(r"^\*{0,2}(\w+)\*{0,2}\s*(\([^)]*\))?\s*:\s*(.*)$")


@cache
def _docstring(factory: Callable) -> _Doc:
    lines = inspect.cleandoc(factory.__doc__ or "").splitlines()
    paragraphs: list[list[str]] = [[]]
    arguments: dict[str, str] = {}
    section, skip_below, current = None, None, None
    math: list[str] | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if skip_below is not None:  # inside a `.. note::` block or after a `::` literal
            if not text or indent > skip_below:
                if math is not None and text:
                    math.append(text)
                continue
            skip_below = None
            if math:  # a `.. math::` block: its formula inline, in the argument or paragraph it sits in
                formula = latex(" ".join(math))
                if current is not None and section in _ARGUMENT_SECTIONS:
                    arguments[current[0]] += " " + formula
                elif section is None:
                    paragraphs[-1].append(formula)
            math = None
        if not text:
            if section is None and paragraphs[-1]:
                paragraphs.append([])
            continue
        if indent == 0 and _SECTION.match(text):
            section, current = text.rstrip(":").lower(), None
            continue
        if _DIRECTIVE.match(text) or (section is None and text.endswith("::") and not text.startswith(":")):
            skip_below = indent
            math = [text.split("::", 1)[1].strip()] if text.startswith(".. math::") else None
            if not _DIRECTIVE.match(text) and section is None:
                paragraphs[-1].append(text[:-1])
            continue
        if indent == 0 and section is not None:  # text after a section: the description again
            section = None
        if section in _ARGUMENT_SECTIONS:
            match = _ARGUMENT.match(text)
            if match and (current is None or indent <= current[1]):
                current = (match.group(1), indent)
                arguments[current[0]] = match.group(3)
            elif current is not None:
                arguments[current[0]] += " " + text
            continue
        if section is None:
            paragraphs[-1].append(text)
    first = next((p for p in paragraphs if p), [])
    return _Doc(plain(" ".join(first)), {k: _argument_text(v) for k, v in arguments.items()})


def _argument_text(text: str) -> str:
    text = plain(text)
    text = re.sub(r"\s*\((required|default\b[^)]*)\)", "", text, flags=re.I)  # the default column says it
    text = re.sub(r"\s*\(?\bDefault(s)?\b\s*(:|is|=)?\s*[^.;)]*\)?\.?\s*$", "", text).strip()
    return shorten(first_sentence(text), 160)


_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "eta": "η",
    "theta": "θ", "lambda": "λ", "mu": "μ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ",
    "psi": "ψ", "omega": "ω", "Delta": "Δ", "Sigma": "Σ", "Omega": "Ω",
}  # fmt: skip
_SYMBOLS = {
    "times": "×", "cdot": "·", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠",
    "infty": "∞", "sum": "Σ", "prod": "Π", "star": "⋆", "ldots": "...", "cdots": "...", "dots": "...",
    "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "in": "∈", "to": "→", "rightarrow": "→",
    "approx": "≈", "sim": "~", "odot": "⊙", "otimes": "⊗", "pm": "±", "mid": "|", "vert": "|",
}  # fmt: skip


def latex(text: str) -> str:
    """LaTeX math as readable text: `H_{\\text{in}}` -> H_in, `\\frac{1}{k}` -> 1/k, `\\alpha` -> α."""
    text = text.replace("\\{", "\x00").replace("\\}", "\x01").replace("\\_", "_")
    text = re.sub(r"\\(begin|end)\{[^{}]*\}", " ", text)
    text = re.sub(r"\\(left|right|big|Big|bigg|Bigg)\b\s*", "", text)
    text = re.sub(r"\\[,;:! ]|\\q?quad\b", " ", text)
    text = text.replace("\\\\", "; ").replace("&", " ")
    for _ in range(8):  # innermost braces first, as often as they nest
        before = text
        text = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", lambda m: f"{_group(m[1])}/{_group(m[2])}", text)
        text = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"sqrt(\1)", text)
        text = re.sub(r"\\(?!frac\b|sqrt\b)[a-zA-Z]+\s*\{([^{}]*)\}", r"\1", text)  # \text{}, \mathrm{}, \mathcal{}, ...
        text = re.sub(r"([_^])\{([^{}]*)\}", lambda m: m[1] + (m[2] if re.fullmatch(r"\w+", m[2]) else f"({m[2]})"), text)
        if text == before:
            break
    text = text.replace("{", "").replace("}", "")  # grouping braces left over
    text = re.sub(r"\\([a-zA-Z]+)", lambda m: _GREEK.get(m[1]) or _SYMBOLS.get(m[1]) or m[1], text)
    text = text.replace("\\", "").replace("\x00", "{").replace("\x01", "}")
    return re.sub(r"\s+", " ", text).strip()


def _group(text: str) -> str:
    text = text.strip()
    return text if re.fullmatch(r"[\w.]+", text) else f"({text})"


def plain(text: str) -> str:
    """reStructuredText as readable text: :class:`~torch.nn.Linear` -> Linear, ``x`` -> x,
    :math:`y = xA^T + b` -> y = xA^T + b, `link <url>`__ -> link."""
    text = re.sub(r":math:`([^`]*)`", lambda m: latex(m[1]), text)
    text = re.sub(r":[\w:.+-]+:`([^`<]*?)\s*<[^`>]*>`", r"\1", text)  # :ref:`text <target>`
    text = re.sub(r":[\w:.+-]+:`!?~([^`]*?)`", lambda m: m[1].rsplit(".", 1)[-1], text)  # :class:`~a.b.C` -> C
    text = re.sub(r":[\w:.+-]+:`!?([^`]*)`", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*<[^`>]*>`_{0,2}", r"\1", text)  # `text <url>`__
    text = re.sub(r"`([^`]*)`_{0,2}", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


_ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "w.r.t", "resp", "cf", "approx", "Eq", "eq", "Fig", "fig", "al")


def first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not e.g.'s or i.e.'s, nor a number's point)."""
    for match in re.finditer(r"[.!?](?=\s|$)", text):
        before = text[: match.start()]
        if before.endswith("."):  # an ellipsis
            continue
        if before.endswith(_ABBREVIATIONS) and not before.endswith(("vs", "al")) or re.search(r"\b(e\.g|i\.e|w\.r\.t)$", before):
            continue
        return text[: match.end()]
    return text


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a space with an ellipsis rather than mid-word."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:(") + "…"

"""`dltrain layers` and `dltrain layers NAME`: plain text (no Sphinx markup), whole words, real examples."""

import re

import pytest
import yaml

from dltrain.console import out
from dltrain.model.builder import build_model, parse_layers
from dltrain.model.registry import describe_layer, latex, layer_examples, layer_registry, plain
from dltrain.task import InputSpec

MARKUP = (":math:", ":class:", ":attr:", ":func:", ":meth:", ":ref:", "``", "\\text", "\\frac", ".. note::", ".. math::")


@pytest.fixture(autouse=True)
def _hundred_columns(monkeypatch):
    """Print as on a 100-column terminal (the console is cached and fixed at 140 columns for pipes)."""
    console = out()
    monkeypatch.setattr(console, "width", 100)


def assert_plain(text: str) -> None:
    for mark in MARKUP:
        assert mark not in text, f"{mark!r} in the output:\n{text}"


def test_the_list_is_plain_and_fits_100_columns(cli):
    result = cli("layers")
    assert result.code == 0, result.output
    assert_plain(result.stdout)
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert "Linear" in result.stdout and "Residual (dltrain)" in result.stdout


def test_no_summary_is_cut_mid_word():
    words = re.compile(r"[A-Za-z]+")
    for name in layer_registry().names():
        entry, _ = describe_layer(name)
        summary = entry.summary
        assert summary or not entry.description, name  # CrossMapLRN2d has no docstring
        assert_plain(summary)
        if summary.endswith("…"):  # shortened: the last word is a word of the description, whole
            last = words.findall(summary)[-1]
            assert re.search(rf"\b{last}\b", entry.description), (name, summary)
        else:
            assert entry.description.startswith(summary.rstrip(".")), (name, summary)


def test_the_list_shows_whole_sentences():
    assert describe_layer("Linear")[0].summary == "Applies an affine linear transformation to the incoming data: y = xA^T + b."
    # Conv2d's first sentence runs over two lines of its docstring
    assert describe_layer("Conv2d")[0].summary == "Applies a 2D convolution over an input signal composed of several input planes."


@pytest.mark.parametrize("name", ["Linear", "Conv2d", "Embedding", "Residual", "LayerNorm", "ELU", "LSTM"])
def test_one_layer_is_plain(cli, name):
    result = cli("layers", name)
    assert result.code == 0, result.output
    assert_plain(result.stdout)
    assert "in a config" in result.stdout


def test_linear_shows_its_formula_as_text(cli):
    assert "y = xA^T + b" in cli("layers", "Linear").stdout


def test_embedding_hides_private_arguments_and_says_vocabulary(cli):
    text = cli("layers", "Embedding").stdout
    assert "_weight" not in text and "_freeze" not in text
    assert "vocabulary size" in " ".join(text.split())
    assert "- Embedding: 32" in text


def test_residual_shows_its_layers_and_an_example(cli):
    text = cli("layers", "Residual").stdout
    assert re.search(r"^\s*layers\.\.\.", text, re.M), text
    examples = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- Residual")]
    assert examples
    layers = [yaml.safe_load(line) for line in examples]
    build_model(parse_layers(layers + [{"Linear": "auto"}]), InputSpec((64,)), 3)  # Linear: 64 inside keeps 64


def example_lines(text: str) -> list[str]:
    return [line.strip()[2:] for line in text.splitlines() if re.match(r"^\s+- [A-Z]", line)]


def test_conv2d_example_is_yaml_that_builds(cli):
    text = cli("layers", "Conv2d").stdout
    lines = example_lines(text)
    assert "Conv2d: [16, 3]" in lines
    assert all("in_channels" not in line for line in lines)  # inferred: left out
    for line in lines:
        layer = yaml.safe_load(line)
        model, table = build_model(parse_layers([layer, "Flatten", {"Linear": "auto"}]), InputSpec((3, 8, 8)), 3)
        assert table[0].output_shape == (16, 6, 6)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Linear", "Linear: 64"),
        ("Dropout", "Dropout: {p: 0.2}"),
        ("LSTM", "LSTM: {hidden_size: 64}"),
        ("TransformerEncoderLayer", "TransformerEncoderLayer: {nhead: 4}"),
        ("Embedding", "Embedding: {embedding_dim: 32}"),
    ],
)
def test_examples_by_name(name, expected):
    assert expected in layer_examples(name)


# every example of every layer parses as YAML and passes the layer checks of a config
@pytest.mark.parametrize("name", layer_registry().names())
def test_every_example_parses_and_binds(name):
    for line in layer_examples(name):
        assert "<" not in line, line  # a value for each required argument
        parse_layers([yaml.safe_load(line)])


def test_plain_text_of_sphinx_markup():
    assert plain(":class:`~torch.nn.Linear`") == "Linear"
    assert plain("``x``") == "x"
    assert plain(":math:`y = xA^T + b`") == "y = xA^T + b"
    assert plain(":attr:`in_channels`") == "in_channels"
    assert plain(":ref:`TensorFloat32<tf32_on_ampere>`") == "TensorFloat32"
    assert latex(r"H_\text{in} = \text{in\_features}") == "H_in = in_features"
    assert latex(r"k = \frac{1}{\text{in\_features}}") == "k = 1/in_features"
    assert latex(r"\mathcal{U}(-\sqrt{k}, \sqrt{k})") == "U(-sqrt(k), sqrt(k))"

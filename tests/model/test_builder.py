import json

import pytest
import torch
from torch import nn

from dltrain.components import Component, ComponentError, bind
from dltrain.model import layers as own
from dltrain.model.builder import LayerErrors, build_model, parse_layers
from dltrain.model.registry import layer_registry
from dltrain.task import InputSpec

VECTOR = InputSpec((8,))


def build(layers: list, spec: InputSpec = VECTOR, output_size: int = 3):
    return build_model(parse_layers(layers), spec, output_size)


def shapes(table) -> list[tuple]:
    return [info.output_shape for info in table]


def build_error(layers: list, spec: InputSpec = VECTOR, output_size: int = 3) -> ComponentError:
    with pytest.raises(ComponentError) as error:
        build(layers, spec, output_size)
    return error.value


# every layer of the registry that needs nothing but what dltrain infers


def _needs_only_inferred(name: str) -> bool:
    entry = layer_registry().get(name)
    if entry.own and entry.signature.var_positional:  # Reshape's shape, Residual's layers
        return False
    try:
        bind(Component(name), entry.signature, tuple(entry.infer))
    except ComponentError:
        return False
    return True


# no required argument, but no output size either: they need `size` or `scale_factor`
NEEDS_A_SIZE = ("Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d")
NO_ARGUMENTS = sorted(n for n in layer_registry().entries if _needs_only_inferred(n) and n not in NEEDS_A_SIZE)


def sample_shape(name: str) -> tuple[int, ...]:
    """A shape the layer takes, as PyTorch lays tensors out: (C, L), (C, H, W), (C, D, H, W), else a vector."""
    for suffix, shape in (("3d", (4, 4, 8, 8)), ("2d", (4, 8, 8)), ("1d", (4, 8))):
        if name.endswith(suffix):
            return shape
    return (8,)


def test_the_no_argument_list_is_the_one_expected():
    assert {"ReLU", "GELU", "Dropout", "Flatten", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "Identity"} <= set(
        NO_ARGUMENTS
    )
    assert not {"Linear", "Conv2d", "LSTM", "Embedding", "Reshape", "Residual", "Transpose"} & set(NO_ARGUMENTS)
    assert len(NO_ARGUMENTS) >= 40


@pytest.mark.filterwarnings("ignore::UserWarning")  # Softmax's implicit dim, InstanceNorm's unused num_features
@pytest.mark.parametrize("name", NO_ARGUMENTS)
def test_every_layer_that_needs_no_arguments_builds(name):
    shape = sample_shape(name)
    model, table = build([name, "Flatten", {"Linear": "auto"}], InputSpec(shape), output_size=3)
    expected = (*shape[:-1], shape[-1] // 2) if name == "GLU" else shape
    assert table[0].name == name
    assert table[0].output_shape == expected
    entry = layer_registry().get(name)
    for argument, rule in entry.infer.items():
        assert table[0].arguments[argument] == (shape[-1] if rule == "last" else shape[0])
    assert model(torch.randn(5, *shape)).shape == (5, 3)


@pytest.mark.parametrize("name", NEEDS_A_SIZE)
def test_upsampling_without_a_size_is_a_component_error(name):
    error = build_error([name, "Flatten", {"Linear": "auto"}], InputSpec((4, 8, 8)))
    assert error.path == ("model", "layers", 0)
    assert str(error).startswith(f"{name} cannot take the input the layer before gives, (batch, 4, 8, 8): ")
    _, table = build([{name: {"scale_factor": 2}}, "Flatten", {"Linear": "auto"}], InputSpec((4, 8, 8)))
    assert table[0].output_shape == (4, 16, 16)


def test_registry_holds_torch_layers_and_dltrain_own():
    entries = layer_registry().entries
    assert entries["ReLU"].factory is nn.ReLU and not entries["ReLU"].own
    for name in ("LSTM", "GRU", "RNN", "Reshape", "Transpose", "Residual"):
        assert entries[name].factory is getattr(own, name) and entries[name].own
    assert not {"Sequential", "ModuleList", "CrossEntropyLoss", "MSELoss", "MultiheadAttention"} & set(entries)
    with pytest.raises(ComponentError, match="Names are case-sensitive: did you mean 'ReLU'"):
        layer_registry().get("Relu")


# shape inference


def test_linear_takes_the_last_dimension():
    model, table = build([{"Linear": 16}, "ReLU", {"Linear": "auto"}])
    assert (model[0].in_features, model[0].out_features) == (8, 16)
    assert (model[2].in_features, model[2].out_features) == (16, 3)
    assert shapes(table) == [(16,), (16,), (3,)]
    assert [info.parameters for info in table] == [8 * 16 + 16, 0, 16 * 3 + 3]
    assert table[0].arguments == {"in_features": 8, "out_features": 16}
    _, table = build([{"Linear": 16}, "Flatten", {"Linear": "auto"}], InputSpec((5, 8)))
    assert shapes(table) == [(5, 16), (80,), (3,)]


@pytest.mark.parametrize(
    "layer, out_features",
    [({"Linear": "auto"}, 5), ({"Linear": {"out_features": "auto"}}, 5), ({"Linear": ["auto", False]}, 5)],
)
def test_auto_is_the_output_size(layer, out_features):
    model, table = build([layer], output_size=out_features)
    assert model[0].out_features == out_features
    assert table[-1].arguments["out_features"] == out_features
    assert model(torch.randn(4, 8)).shape == (4, out_features)


def test_conv1d_and_batchnorm1d_take_dimension_1():
    model, table = build([{"Conv1d": [6, 3]}, "BatchNorm1d", "ReLU", "Flatten", {"Linear": "auto"}], InputSpec((4, 20)))
    assert (model[0].in_channels, model[0].out_channels) == (4, 6)
    assert model[1].num_features == 6
    assert shapes(table) == [(6, 18), (6, 18), (6, 18), (108,), (3,)]


def test_conv2d_stack_infers_every_input():
    model, table = build(
        [
            {"Conv2d": {"out_channels": 16, "kernel_size": 3, "padding": 1}},
            "BatchNorm2d",
            {"MaxPool2d": 2},
            {"Conv2d": [8, [3, 1]]},
            {"AdaptiveAvgPool2d": {"output_size": [1, 1]}},
            "Flatten",
            {"Linear": "auto"},
        ],
        InputSpec((3, 8, 8)),
        output_size=10,
    )
    assert model[0].in_channels == 3 and model[1].num_features == 16 and model[3].in_channels == 16
    assert model[3].kernel_size == (3, 1)
    assert shapes(table) == [(16, 8, 8), (16, 8, 8), (16, 4, 4), (8, 2, 4), (8, 1, 1), (8,), (10,)]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_layernorm_takes_the_last_dimension():
    model, table = build([{"LayerNorm": {"eps": 1e-3}}, "Flatten", {"Linear": "auto"}], InputSpec((5, 8)))
    assert model[0].normalized_shape == (8,)
    assert model[0].eps == 1e-3
    assert shapes(table)[0] == (5, 8)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize(
    "options, shape",
    [
        ({}, (12,)),
        ({"bidirectional": True}, (24,)),
        ({"return_sequences": True}, (7, 12)),
        ({"bidirectional": True, "return_sequences": True}, (7, 24)),
        ({"num_layers": 2}, (12,)),
        ({"num_layers": 2, "bidirectional": True}, (24,)),
    ],
)
def test_recurrent_output_shapes(name, options, shape):
    layers = [{name: {"hidden_size": 12, **options}}, "Flatten", {"Linear": "auto"}]
    model, table = build(layers, InputSpec((7, 5)))
    assert table[0].output_shape == shape
    assert model[0].rnn.input_size == 5 and model[0].rnn.batch_first
    assert model(torch.randn(3, 7, 5)).shape == (3, 3)


def test_recurrent_default_is_the_last_layers_final_state_of_both_directions():
    model, _ = build(
        [{"GRU": {"hidden_size": 6, "num_layers": 2, "bidirectional": True}}, {"Linear": "auto"}], InputSpec((7, 5))
    )
    model.eval()
    x = torch.randn(3, 7, 5)
    output, _ = model[0].rnn(x)
    final = model[0](x)
    # forward direction: its last step; backward direction: its last step is the first position
    assert torch.allclose(final, torch.cat([output[:, -1, :6], output[:, 0, 6:]], dim=1))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_recurrent_layer_on_a_vector_is_a_component_error(name):
    error = build_error([{name: 16}, {"Linear": "auto"}])
    assert error.path == ("model", "layers", 0)


def test_embedding_after_token_ids():
    spec = InputSpec(shape=(10,), dtype="long", vocab_size=50)
    model, table = build([{"Embedding": 16}, {"LSTM": 8}, {"Linear": "auto"}], spec)
    assert model[0].num_embeddings == 50 and model[0].embedding_dim == 16
    assert model[1].rnn.input_size == 16
    assert shapes(table) == [(10, 16), (8,), (3,)]
    assert table[0].parameters == 50 * 16
    assert model(torch.randint(0, 50, (4, 10))).shape == (4, 3)


def test_embedding_needs_token_ids():
    error = build_error([{"Linear": 4}, {"Embedding": 16}, "Flatten", {"Linear": "auto"}])
    assert error.path == ("model", "layers", 1)
    assert (
        str(error)
        == "Embedding takes token ids, but its input is (batch, 4) float values: put it first, right after a text input"
    )


def test_token_ids_need_an_embedding_first():
    error = build_error([{"Linear": 16}, {"Linear": "auto"}], InputSpec((10,), "long", 50))
    assert error.path == ("model", "layers", 0)
    assert str(error) == "Linear takes numbers, but its input is token ids: start the model with Embedding"


# dltrain's own layers


def test_reshape_and_transpose():
    model, table = build(
        [{"Reshape": [3, 4]}, {"Reshape": [-1, 2]}, {"Transpose": [1, 2]}, "Flatten", {"Linear": "auto"}],
        InputSpec((12,)),
    )
    assert shapes(table) == [(3, 4), (6, 2), (2, 6), (12,), (3,)]
    assert table[1].positional == (-1, 2)
    assert table[2].arguments == {"dim0": 1, "dim1": 2}
    x = torch.arange(24.0).reshape(2, 12)
    assert torch.equal(model[:3](x), x.reshape(2, 6, 2).transpose(1, 2))


def test_reshape_to_a_wrong_size_is_a_component_error():
    error = build_error([{"Linear": 4}, {"Reshape": [5, 5]}], InputSpec((12,)))
    assert error.path == ("model", "layers", 1)
    assert str(error).startswith("Reshape cannot take the input the layer before gives, (batch, 4): ")


def test_residual_adds_its_input():
    model, table = build([{"Residual": [{"Linear": 8}, "ReLU"]}, {"Linear": "auto"}])
    assert [(info.name, info.depth) for info in table] == [("Residual", 0), ("Linear", 1), ("ReLU", 1), ("Linear", 0)]
    assert shapes(table) == [(8,), (8,), (8,), (3,)]
    x = torch.randn(4, 8)
    residual = model[0]
    assert torch.allclose(residual(x), x + torch.relu(residual.body[0](x)))


def test_residual_whose_shape_changes_is_a_component_error():
    error = build_error([{"Linear": 8}, {"Residual": [{"Linear": 4}, "ReLU"]}, {"Linear": "auto"}])
    assert error.path == ("model", "layers", 1)
    assert str(error).startswith("Residual's layers turn (batch, 8) into (batch, 4); their output must have the shape")


def test_residual_inner_error_has_the_inner_path():
    error = build_error([{"Residual": ["ReLU", {"Linear": 8}, "BatchNorm2d"]}, {"Linear": "auto"}])
    assert error.path == ("model", "layers", 0, "Residual", 2)
    assert str(error).startswith("BatchNorm2d cannot take the input the layer before gives, (batch, 8): ")


# errors


def test_conv_output_without_flatten_says_add_flatten():
    error = build_error([{"Conv2d": [4, 3]}, "ReLU", {"Linear": "auto"}], InputSpec((1, 8, 8)))
    assert error.path == ("model", "layers", 2)
    assert str(error) == (
        "the model gives (batch, 4, 6, 3) per batch, but the loss and target need (batch, 3). "
        "Add `Flatten` before the last Linear layers to turn it into one vector per sample."
    )


def test_wrong_output_size_says_write_auto():
    error = build_error([{"Linear": 16}, {"Linear": 5}])
    assert error.path == ("model", "layers", 1)
    assert str(error).endswith("need (batch, 3). Make the last layer give 3 (write `auto` and dltrain fills it in).")


def test_layer_that_raises_on_its_input_names_its_path():
    error = build_error([{"Linear": 8}, "BatchNorm2d", {"Linear": "auto"}])
    assert error.path == ("model", "layers", 1)
    assert str(error) == (
        "BatchNorm2d cannot take the input the layer before gives, (batch, 8): expected 4D input (got 2D input)"
    )


def test_constructor_error_names_the_layer_and_path():
    error = build_error([{"Linear": 8}, {"Dropout": 1.5}, {"Linear": "auto"}])
    assert error.path == ("model", "layers", 1)
    assert str(error) == "Dropout: dropout probability has to be between 0 and 1, but got 1.5"


def test_parse_layers_reports_every_bad_layer_with_its_path():
    with pytest.raises(LayerErrors) as error:
        parse_layers(
            [
                "Linaer",
                {"Linear": {"out_feature": 3}},
                "ReLU",
                {"Linear": {"in_features": 3, "out_features": 2}},
                {"Residual": None},
                {"Residual": ["Relu"]},
                "Linear",
            ]
        )
    found = {e.path: str(e) for e in error.value.errors}
    assert list(found) == [
        ("model", "layers", 0),
        ("model", "layers", 1),
        ("model", "layers", 3),
        ("model", "layers", 4),
        ("model", "layers", 5, "Residual", 0),
        ("model", "layers", 6),
    ]
    assert found[("model", "layers", 0)].startswith("unknown layer 'Linaer'. Did you mean 'Linear'")
    assert "Did you mean 'out_features'?" in found[("model", "layers", 1)]
    assert (
        found[("model", "layers", 3)]
        == "Linear: `in_features` is inferred by dltrain from the layer before; leave it out"
    )
    assert found[("model", "layers", 4)].startswith("Residual takes a list of layers")
    assert "did you mean 'ReLU'" in found[("model", "layers", 5, "Residual", 0)]
    assert found[("model", "layers", 6)].startswith("Linear needs argument(s) out_features")


def test_input_spec_round_trip_is_plain():
    spec = InputSpec((10,), "long", 50)
    saved = spec.to_dict()
    assert saved == {"shape": [10], "dtype": "long", "vocab_size": 50}
    assert InputSpec.from_dict(json.loads(json.dumps(saved))) == spec


def test_transformer_encoder_layer_is_batch_first():
    model, table = build(
        [
            {"TransformerEncoderLayer": {"nhead": 2, "dim_feedforward": 16, "dropout": 0.0}},
            "Flatten",
            {"Linear": "auto"},
        ],
        InputSpec((5, 8)),
    )
    assert table[0].arguments["d_model"] == 8 and table[0].arguments["batch_first"] is True
    assert table[0].output_shape == (5, 8)
    layer = model[0].eval()
    x = torch.randn(3, 5, 8)
    changed = x.clone()
    changed[1:] += 1.0
    assert torch.allclose(layer(x)[0], layer(changed)[0], atol=1e-6)  # samples do not mix


def test_group_norm_takes_dimension_1():
    model, table = build([{"GroupNorm": 2}, "Flatten", {"Linear": "auto"}], InputSpec((4, 8, 8)))
    assert (model[0].num_groups, model[0].num_channels) == (2, 4)
    assert table[0].output_shape == (4, 8, 8)

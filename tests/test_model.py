"""config -> keras.Model: layer order, bias, initializers and dropout placement as configured."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from dnnexp.backend import keras
from dnnexp.model import build_model


def layer_kinds(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def build(*overrides):
    return build_model(tiny_config("model.hidden_layers=2", *overrides), (28, 28), 10)


def test_no_normalization_is_dense_then_activation():
    assert layer_kinds(build()) == ["Flatten", "Dense", "Activation", "Dense", "Activation", "Dense"]


def test_batchnorm_before_drops_dense_bias_and_precedes_activation():
    model = build("normalization=batchnorm_before")
    assert layer_kinds(model) == [
        "Flatten", "Dense", "BatchNormalization", "Activation", "Dense", "BatchNormalization", "Activation", "Dense",
    ]
    assert [model.get_layer(f"dense_{i}").use_bias for i in (1, 2)] == [False, False]
    assert model.get_layer("output").use_bias


def test_batchnorm_after_follows_activation_and_keeps_bias():
    model = build("normalization=batchnorm_after", "normalization.momentum=0.9", "normalization.epsilon=1e-5")
    assert layer_kinds(model)[1:4] == ["Dense", "Activation", "BatchNormalization"]
    bn = model.get_layer("batchnorm_1")
    assert model.get_layer("dense_1").use_bias
    # Keras: moving = momentum * moving + (1 - momentum) * batch, i.e. the lecture's alpha = 1 - momentum.
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)


@pytest.mark.parametrize(
    "activation, initializer, expected",
    [
        ("relu", "auto", "HeNormal"),
        ("elu", "auto", "HeNormal"),
        ("leaky_relu", "auto", "HeNormal"),
        ("selu", "auto", "LecunNormal"),
        ("tanh", "auto", "GlorotUniform"),
        ("sigmoid", "auto", "GlorotUniform"),
        ("relu", "he_uniform", "HeUniform"),
        ("relu", "glorot_normal", "GlorotNormal"),
        ("tanh", "lecun_normal", "LecunNormal"),
    ],
)
def test_initializer_classes(activation, initializer, expected):
    model = build(f"activation={activation}", f"initializer={initializer}")
    assert type(model.get_layer("dense_1").kernel_initializer).__name__ == expected


def test_leaky_relu_uses_configured_slope():
    layer = build("activation=leaky_relu", "activation.alpha=0.1").get_layer("activation_1")
    assert isinstance(layer, keras.layers.LeakyReLU)
    assert float(layer(keras.ops.convert_to_tensor([-10.0]))[0]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "layers, expected",
    [
        ("all", ["dropout_input", "dropout_1", "dropout_2", "dropout_3"]),
        ("hidden", ["dropout_1", "dropout_2", "dropout_3"]),
        ("input", ["dropout_input"]),
        ("last", ["dropout_2", "dropout_3"]),
    ],
)
def test_dropout_placement_never_on_output(layers, expected):
    model = build("model.hidden_layers=3", "regularization=dropout", "regularization.rate=0.3",
                  f"regularization.layers={layers}", "regularization.last_k=2")
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.name for d in dropouts] == expected
    assert all(d.rate == 0.3 for d in dropouts)
    assert isinstance(model.layers[-1], keras.layers.Dense)


def test_units_list_gives_each_hidden_layer_its_size():
    model = build("model.units=[30,20,10]")
    assert [model.get_layer(f"dense_{i}").units for i in (1, 2, 3)] == [30, 20, 10]


def test_binary_task_has_one_sigmoid_output():
    model = build_model(tiny_config(), (28, 28), 2)
    assert model.get_layer("output").units == 1

"""config -> keras.Model: layer order, bias, initializers and dropout placement as configured."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from dnnexp.keras_import import keras
from dnnexp.model import build_model, hidden_blocks


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


@pytest.mark.parametrize(
    "penalty, expected",
    [
        ("l1", lambda w: 0.01 * np.abs(w).sum()),
        ("l2", lambda w: 0.02 * np.square(w).sum()),
        ("l1_l2", lambda w: 0.01 * np.abs(w).sum() + 0.02 * np.square(w).sum()),
    ],
)
def test_kernel_penalty_adds_its_formula_to_the_loss(penalty, expected):
    model = build("model.hidden_layers=2", f"regularization={penalty}", "regularization.l1=0.01", "regularization.l2=0.02")
    kernels = [model.get_layer(f"dense_{i}").kernel.numpy() for i in (1, 2)]
    assert float(sum(model.losses)) == pytest.approx(sum(expected(w) for w in kernels), rel=1e-5)
    assert model.get_layer("output").kernel_regularizer is None  # hidden kernels only


def test_max_norm_caps_each_units_incoming_weights_after_a_step():
    cfg = tiny_config("model=cnn", "model.filters=[4]", "regularization=max_norm", "regularization.max_norm=0.5")
    model = build_model(cfg, (28, 28), 10)
    model.compile(optimizer=keras.optimizers.SGD(10.0), loss="sparse_categorical_crossentropy")
    model.train_on_batch(np.random.default_rng(0).random((8, 28, 28)), np.arange(8))
    dense_units = np.linalg.norm(model.get_layer("dense_1").kernel.numpy(), axis=0)  # (in, out): one column per unit
    filters = np.linalg.norm(model.get_layer("conv_1").kernel.numpy().reshape(-1, 4), axis=0)  # (rows, cols, in, out)
    assert dense_units.max() <= 0.5 + 1e-5 and filters.max() <= 0.5 + 1e-5
    assert dense_units.max() > 0.49 and filters.max() > 0.49  # the step of 10 pushed them to the cap


def test_alpha_dropout_for_selu_nets():
    model = build("activation=selu", "regularization=alpha_dropout", "regularization.layers=hidden")
    drops = [layer for layer in model.layers if "dropout" in layer.name]
    assert [type(d).__name__ for d in drops] == ["AlphaDropout", "AlphaDropout"]
    assert drops[0].rate == 0.1


@pytest.mark.parametrize("shape, first", [((28, 28), "Reshape"), ((32, 32, 3), "Conv2D")])
def test_cnn_is_conv_blocks_then_the_dense_head(shape, first):
    cfg = tiny_config("model=cnn", "model.filters=[8,16]", "model.units=32", "normalization=batchnorm_before",
                      "regularization=dropout", "regularization.layers=hidden")
    model = build_model(cfg, shape, 10)
    assert layer_kinds(model)[0] == first
    assert [layer.name for layer in model.layers if "conv" in layer.name or "pool" in layer.name][:5] == [
        "conv_1", "batchnorm_conv_1", "activation_conv_1", "pool_1", "dropout_conv_1",
    ]
    assert model.get_layer("conv_2").filters == 16 and not model.get_layer("conv_2").use_bias
    assert model.get_layer("dense_1").units == 32
    assert model.output_shape == (None, 10)
    assert model.get_layer("flatten").output.shape[-1] == 16 * (shape[0] // 4) ** 2  # two 2x2 poolings


def test_hidden_blocks_pair_weights_with_their_activations():
    model = build_model(tiny_config("model=cnn", "model.filters=[4]", "model.hidden_layers=2"), (28, 28), 10)
    assert hidden_blocks(model) == [("conv_1", "activation_conv_1"), ("dense_1", "activation_1"), ("dense_2", "activation_2")]


@pytest.mark.parametrize("kind, keeps_moments", [("alpha_dropout", True), ("dropout", False)])
def test_alpha_dropout_keeps_selu_activations_standard_and_dropout_does_not(kind, keeps_moments):
    # Self-normalized activations (SELU of N(0, 1)) have mean 0 and std 1; in training mode alpha
    # dropout keeps them there, plain dropout scales the kept units by 1 / (1 - rate) and inflates the std.
    keras.utils.set_random_seed(0)
    model = build("activation=selu", f"regularization={kind}", "regularization.rate=0.3", f"regularization.dropout_kind={kind}")
    x = keras.activations.selu(np.random.default_rng(0).standard_normal((20000, 16)).astype("float32"))
    dropped = keras.ops.convert_to_numpy(model.get_layer("dropout_1")(x, training=True))
    assert abs(dropped.mean()) < 0.05
    assert (abs(dropped.std() - 1) < 0.05) == keeps_moments


@pytest.mark.parametrize(
    "units, total, non_trainable",
    [
        # The lecture's case study: Flatten, BN, 2 x (Dense(50), relu, BN), softmax.
        ("[50,50]", 45_846, 1_768),
        # HML's BN-after model with input BN: 300 then 100 units.
        ("[300,100]", 271_346, 2_368),
    ],
)
def test_input_batchnorm_gives_the_references_parameter_counts(units, total, non_trainable):
    model = build(f"model.units={units}", "normalization=batchnorm_after", "normalization.input=true")
    assert layer_kinds(model)[:4] == ["Flatten", "BatchNormalization", "Dense", "Activation"]
    assert model.layers[1].name == "batchnorm_input"
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), model.count_params() - trainable) == (total, non_trainable)


@pytest.mark.parametrize("normalization", ["none", "batchnorm_before"])
def test_input_batchnorm_works_with_any_placement(normalization):
    model = build(f"normalization={normalization}", "normalization.input=true", "regularization=dropout")
    kinds = layer_kinds(model)
    assert kinds[:3] == ["Flatten", "BatchNormalization", "Dropout"]  # normalized, then dropped
    assert kinds.count("BatchNormalization") == (1 if normalization == "none" else 3)


def test_input_batchnorm_of_a_cnn_normalizes_each_channel_of_the_image():
    cfg = tiny_config("model=cnn", "model.filters=[4]", "normalization.input=true")
    model = build_model(cfg, (32, 32, 3), 10)
    assert layer_kinds(model)[:2] == ["BatchNormalization", "Conv2D"]
    assert model.get_layer("batchnorm_input").gamma.shape == (3,)
    grey = build_model(cfg, (28, 28), 10)
    assert layer_kinds(grey)[:3] == ["Reshape", "BatchNormalization", "Conv2D"]


def test_penalize_output_adds_the_output_kernels_penalty_too():
    # HML's l2 example: l2(0.01) on every Dense layer, the output layer included.
    model = build("model.hidden_layers=2", "regularization=l2", "regularization.l2=0.01", "regularization.penalize_output=true")
    kernels = [model.get_layer(name).kernel.numpy() for name in ("dense_1", "dense_2", "output")]
    assert float(sum(model.losses)) == pytest.approx(sum(0.01 * np.square(w).sum() for w in kernels), rel=1e-5)
    assert len(model.losses) == 3


def test_raw_pixels_scale_the_input_back_to_0_255_inside_the_model():
    model = build("dataset.raw_pixels=true")
    assert model.layers[0].name == "raw_pixels" and not model.layers[0].weights
    assert model.count_params() == build().count_params()
    x = np.random.default_rng(0).random((2, 28, 28)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0](x)), 255 * x, rtol=1e-6)


@pytest.mark.parametrize(
    "overrides, total, non_trainable",
    [
        (["model.units=50"], 42_310, 0),  # the lecture's 784-50-50-10
        (["model.units=[300,100]", "normalization=batchnorm_before"], 267_810, 800),  # HML ch. 11, BN before the activation
        (["model.units=100"], 89_610, 0),  # dnnexp's default 784-100-100-10
    ],
)
def test_standardization_adds_no_parameters_to_the_published_counts(overrides, total, non_trainable):
    rng = np.random.default_rng(0)
    stats = (rng.random((28, 28), dtype=np.float32), rng.random((28, 28), dtype=np.float32) + 0.5)
    for standardize in (None, stats):
        model = build_model(tiny_config("model.hidden_layers=2", *overrides), (28, 28), 10, standardize)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert (model.count_params(), model.count_params() - trainable) == (total, non_trainable)


def test_standardization_layer_is_the_per_pixel_formula():
    rng = np.random.default_rng(1)
    mean, std = rng.random((4, 4), dtype=np.float32), rng.random((4, 4), dtype=np.float32) + 0.1
    x = rng.random((3, 4, 4), dtype=np.float32)
    layer = build_model(tiny_config(), (4, 4), 10, (mean, std)).get_layer("standardize")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), (x - mean) / std, rtol=1e-5, atol=1e-6)

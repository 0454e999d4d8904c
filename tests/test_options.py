"""Each command-line option reaches the model, data or optimizer as configured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import tiny_config
from formats import write_cifar10, write_fashion_mnist

from dnnexp.keras_import import keras
from dnnexp.data import DataError, load_raw
from dnnexp.model import build_model
from dnnexp.train import train

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
X = np.array([-2.0, -0.5, 0.0, 1.5], dtype="float32")

# The lecture's equations (11)-(14), and the saturating pair.
FORMULAS = {
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "elu": lambda x: np.where(x >= 0, x, np.exp(x) - 1),
    "selu": lambda x: SELU_SCALE * np.where(x >= 0, x, SELU_ALPHA * np.exp(x) - SELU_ALPHA),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_layer_computes_its_formula(name):
    model = build_model(tiny_config(f"activation={name}"), (28, 28), 10)
    layer = model.get_layer("activation_1")
    got = keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(X)))
    np.testing.assert_allclose(got, FORMULAS[name](X), rtol=2e-3, atol=1e-6)


def test_a_yamls_other_keys_are_the_activations_arguments_and_save_with_the_model(tmp_path):
    # ELU with alpha 0.5 (Keras' elu(x, alpha)); Keras' Activation layer takes no arguments, dnnexp's KerasActivation does.
    model = build_model(tiny_config("activation=elu", "+activation.alpha=0.5"), (28, 28), 10)
    model.save(tmp_path / "elu.keras")
    layer = keras.models.load_model(tmp_path / "elu.keras").get_layer("activation_1")
    got = keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(X)))
    np.testing.assert_allclose(got, np.where(X >= 0, X, 0.5 * (np.exp(X) - 1)), rtol=1e-6)
    celu = build_model(tiny_config("activation.name=celu", "+activation.alpha=2.0"), (28, 28), 10).get_layer("activation_1")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(celu(keras.ops.convert_to_tensor(X))),
                               np.where(X >= 0, X, 2.0 * (np.exp(X / 2.0) - 1)), rtol=1e-6)


def test_prelu_learns_one_slope_per_unit():
    # HML2's PReLU net, 300 and 100 units: each PReLU adds one slope per unit to the parameters.
    model = build_model(tiny_config("activation=prelu", "model.units=[300,100]"), (28, 28), 10)
    assert model.count_params() == (784 * 300 + 300 + 300) + (300 * 100 + 100 + 100) + (100 * 10 + 10)
    layer = model.get_layer("activation_2")
    assert isinstance(layer, keras.layers.PReLU) and layer.trainable_weights
    slopes = np.linspace(0.1, 0.5, 100).astype("float32")
    layer.set_weights([slopes])
    x = np.tile(X.reshape(-1, 1), (1, 100))
    got = keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(got, np.where(x >= 0, x, slopes * x), rtol=1e-6)


@pytest.mark.parametrize(
    "overrides, limit, std",
    [
        # U(-sqrt(3 / fan_in), sqrt(3 / fan_in)): variance 1 / fan_in
        (["initializer=lecun_uniform"], math.sqrt(3 / 400), math.sqrt(1 / 400)),
        # HML's He init over fan_avg: scale 2, uniform, variance 2 / ((fan_in + fan_out) / 2)
        (["initializer=variance_scaling", "initializer.scale=2", "initializer.mode=fan_avg", "initializer.distribution=uniform"],
         math.sqrt(3 * 2 / 300), math.sqrt(2 / 300)),
    ],
)
def test_uniform_initializers_draw_with_their_variance(overrides, limit, std):
    model = build_model(tiny_config("model.units=[400,200]", *overrides), (20, 20), 10)
    kernel = model.get_layer("dense_2").kernel.numpy()  # fan_in 400, fan_out 200
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit
    assert kernel.std() == pytest.approx(std, rel=0.02)


def test_variance_scaling_passes_its_keys_to_keras():
    init = build_model(tiny_config("initializer=variance_scaling", "initializer.mode=fan_out"), (28, 28), 10)
    config = init.get_layer("dense_1").kernel_initializer.get_config()
    assert (config["scale"], config["mode"], config["distribution"]) == (1.0, "fan_out", "truncated_normal")


def test_fashion_mnist_from_data_dir_trains(tmp_path):
    folder = write_fashion_mnist(tmp_path / "fm", n_train=120, n_test=30)
    cfg = tiny_config("dataset=fashion_mnist", f"dataset.data_dir={folder}", "dataset.val_size=20",
                      "dataset.limit=null", "trainer.epochs=1")
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed" and metrics["params_total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10


def test_cifar10_from_data_dir_trains_on_colour_images(tmp_path):
    write_cifar10(tmp_path / "c10", n_per_batch=20)
    cfg = tiny_config("dataset=cifar10", f"dataset.data_dir={tmp_path / 'c10'}", "dataset.val_size=20",
                      "dataset.limit=null", "trainer.epochs=1")
    metrics = train(cfg, tmp_path / "run")
    assert metrics["params_total"] == 3072 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10


def test_offline_download_failure_says_which_files_to_put_where(monkeypatch):
    def offline():
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    load_raw.cache_clear()
    with pytest.raises(DataError) as err:
        load_raw("cifar10", None)
    message = str(err.value)
    assert "could not download cifar10" in message and "Name or service not known" in message
    assert "cifar-10-batches-py" in message and "dataset.data_dir=" in message

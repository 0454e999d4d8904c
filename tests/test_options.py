"""Each command-line option reaches the model, data or optimizer as configured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import tiny_config
from formats import write_cifar10, write_fashion_mnist

from dnnexp.backend import keras
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
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_layer_computes_its_formula(name):
    model = build_model(tiny_config(f"activation={name}"), (28, 28), 10)
    layer = model.get_layer("activation_1")
    got = keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(X)))
    np.testing.assert_allclose(got, FORMULAS[name](X), rtol=2e-3, atol=1e-6)


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

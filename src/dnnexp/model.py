"""Config -> keras.Model: an MLP whose every hidden block follows the lecture's choices.

A hidden block is Dense -> [BatchNorm] -> activation -> [BatchNorm] -> [Dropout], named
``dense_i``, ``batchnorm_i``, ``activation_i``, ``dropout_i`` (i from 1) so reports,
diagnostics and transfer learning can find a block's layers by name.
"""

from __future__ import annotations

from collections.abc import Callable

from dnnexp.backend import keras

from dnnexp.config import ActivationConfig, Config, hidden_units

# Activation layers by config name (Keras' own activations; LeakyReLU needs its slope).
ACTIVATIONS: dict[str, Callable[[ActivationConfig, str], keras.layers.Layer]] = {
    "relu": lambda cfg, name: keras.layers.Activation("relu", name=name),
    "leaky_relu": lambda cfg, name: keras.layers.LeakyReLU(negative_slope=cfg.alpha, name=name),
    "elu": lambda cfg, name: keras.layers.Activation("elu", name=name),
    "selu": lambda cfg, name: keras.layers.Activation("selu", name=name),
    "tanh": lambda cfg, name: keras.layers.Activation("tanh", name=name),
    "sigmoid": lambda cfg, name: keras.layers.Activation("sigmoid", name=name),
    "gelu": lambda cfg, name: keras.layers.Activation("gelu", name=name),
    "swish": lambda cfg, name: keras.layers.Activation("silu", name=name),
}

# Keras initializer identifiers by config name; `auto` resolves through AUTO_INITIALIZER.
INITIALIZERS = {
    "he_normal": "he_normal",
    "he_uniform": "he_uniform",
    "lecun_normal": "lecun_normal",
    "glorot_uniform": "glorot_uniform",
    "glorot_normal": "glorot_normal",
}

# HML ch. 11, table 11-1: He for ReLU and its variants, LeCun for SELU, Glorot for the rest.
AUTO_INITIALIZER = {
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "swish": "he_normal",
    "selu": "lecun_normal",
    "tanh": "glorot_uniform",
    "sigmoid": "glorot_uniform",
}

# Where the batch normalization goes relative to the activation.
NORMALIZATION_PLACEMENT = {"none": None, "batchnorm_before": "before", "batchnorm_after": "after"}


def initializer_name(cfg: Config) -> str:
    name = cfg.initializer.name
    return AUTO_INITIALIZER[cfg.activation.name] if name == "auto" else INITIALIZERS[name]


def dropout_flags(cfg: Config, n_hidden: int) -> tuple[bool, list[bool]]:
    """(dropout on the input?, dropout after each hidden layer?): never on the output layer."""
    reg = cfg.regularization
    if reg.rate == 0:
        return False, [False] * n_hidden
    on_input = reg.layers in ("all", "input")
    if reg.layers in ("all", "hidden"):
        hidden = [True] * n_hidden
    elif reg.layers == "last":
        hidden = [i >= n_hidden - reg.last_k for i in range(n_hidden)]
    else:
        hidden = [False] * n_hidden
    return on_input, hidden


def output_layer(n_classes: int) -> keras.layers.Dense:
    """Softmax over the classes, or one sigmoid unit for a binary task."""
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="output")
    return keras.layers.Dense(n_classes, activation="softmax", name="output")


def loss_for(n_classes: int) -> str:
    return "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"


def build_model(cfg: Config, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    units = hidden_units(cfg.model)
    drop_input, drop_hidden = dropout_flags(cfg, len(units))

    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape, name="input"), keras.layers.Flatten(name="flatten")]
    if drop_input:
        layers.append(keras.layers.Dropout(cfg.regularization.rate, name="dropout_input"))
    for i, (width, dropout) in enumerate(zip(units, drop_hidden), start=1):
        layers.extend(hidden_block(cfg, i, width, dropout))
    layers.append(output_layer(n_classes))
    return keras.Sequential(layers, name="mlp")


def hidden_block(cfg: Config, i: int, width: int, dropout: bool) -> list[keras.layers.Layer]:
    """Hidden block i: Dense -> [BatchNorm] -> activation -> [BatchNorm] -> [Dropout], as configured."""
    placement = NORMALIZATION_PLACEMENT[cfg.normalization.name]
    # Before-activation BN has its own shift (beta), so the Dense bias would be redundant.
    layers = [keras.layers.Dense(width, use_bias=placement != "before", kernel_initializer=initializer_name(cfg), name=f"dense_{i}")]
    if placement == "before":
        layers.append(_batchnorm(cfg, i))
    layers.append(ACTIVATIONS[cfg.activation.name](cfg.activation, f"activation_{i}"))
    if placement == "after":
        layers.append(_batchnorm(cfg, i))
    if dropout:
        layers.append(keras.layers.Dropout(cfg.regularization.rate, name=f"dropout_{i}"))
    return layers


def _batchnorm(cfg: Config, i: int) -> keras.layers.BatchNormalization:
    norm = cfg.normalization
    return keras.layers.BatchNormalization(momentum=norm.momentum, epsilon=norm.epsilon, name=f"batchnorm_{i}")

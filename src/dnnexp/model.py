"""Config -> keras.Model: an MLP (or a small CNN) whose every hidden block follows the lecture's choices.

A hidden block is Dense -> [BatchNorm] -> activation -> [BatchNorm] -> [Dropout], named
``dense_i``, ``batchnorm_i``, ``activation_i``, ``dropout_i`` (i from 1) so reports,
diagnostics and transfer learning can find a block's layers by name. A CNN's conv blocks
are named the same way with ``conv_i``, ``batchnorm_conv_i``, ``activation_conv_i``,
``pool_i``, ``dropout_conv_i``. ``normalization.input`` adds ``batchnorm_input`` in front of
the first block (right after Flatten; in a CNN, on the image), as the lecture's case study does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dnnexp.keras_import import keras

from dnnexp.config import ActivationConfig, Config, RegularizationConfig, choices, hidden_units, keras_arguments, registry

# Activations that are layers of their own: LeakyReLU takes activation.alpha as its slope, PReLU
# learns one slope per unit (HML ch. 11). Every other name is a function keras.activations.get resolves.
ACTIVATION_LAYERS: dict[str, Callable[..., keras.layers.Layer]] = {
    "leaky_relu": lambda name, alpha=None, **args: keras.layers.LeakyReLU(
        **({} if alpha is None else {"negative_slope": alpha}), **args, name=name
    ),
    "prelu": lambda name, **args: keras.layers.PReLU(**args, name=name),
}

# HML ch. 11, table 11-1: He for ReLU and its variants, LeCun for SELU, Glorot (Keras' default) for the rest.
AUTO_INITIALIZER = {
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "prelu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "swish": "he_normal",
    "mish": "he_normal",
    "selu": "lecun_normal",
}


@keras.saving.register_keras_serializable(package="dnnexp")
class KerasActivation(keras.layers.Layer):
    """A Keras activation function called with keyword arguments (``elu`` with ``alpha``, ``celu``, ...).

    Keras' Activation layer calls its function with the input alone, and a functools.partial
    would not save with the model, so the name and the arguments are this layer's config.
    """

    def __init__(self, activation: str, arguments: dict, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.arguments = dict(arguments)
        self.function = keras.activations.get(activation)

    def call(self, x):
        return self.function(x, **self.arguments)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation, "arguments": self.arguments}


def activation_layer(cfg: ActivationConfig, name: str) -> keras.layers.Layer:
    """The activation as a layer, given every argument its YAML sets."""
    args = keras_arguments(cfg)
    if cfg.name in ACTIVATION_LAYERS:
        return ACTIVATION_LAYERS[cfg.name](name, **args)
    if args:
        return KerasActivation(cfg.name, args, name=name)
    return keras.layers.Activation(cfg.name, name=name)


def build_initializer(cfg: Config) -> keras.initializers.Initializer:
    """A new kernel initializer: Keras' class for the name, given the YAML's arguments (auto: by the activation)."""
    init = cfg.initializer
    if init.name == "auto":
        return keras.initializers.get(AUTO_INITIALIZER.get(cfg.activation.name, "glorot_uniform"))
    # get() resolves the name (and its aliases) to an instance with Keras' defaults; its class takes the arguments.
    return type(keras.initializers.get(init.name))(**keras_arguments(init))


# The first layer of a model whose network computes on 0-255 pixels (dataset.raw_pixels).
RAW_PIXELS = "raw_pixels"

# The first layer of a model trained on standardized pixels (dataset.standardize).
STANDARDIZE = "standardize"

# Where the batch normalization goes relative to the activation.
NORMALIZATION_PLACEMENT = registry(choices.NORMALIZATIONS, {"none": None, "batchnorm_before": "before", "batchnorm_after": "after"})


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


def output_layer(n_classes: int, penalty: keras.regularizers.Regularizer | None = None) -> keras.layers.Dense:
    """Softmax over the classes, or one sigmoid unit for a binary task; ``penalty`` on its kernel.

    Always float32: under mixed precision a float16 softmax and loss lose too much (Keras' advice).
    """
    units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
    return keras.layers.Dense(units, activation=activation, kernel_regularizer=penalty, dtype="float32", name="output")


def loss_for(n_classes: int) -> str:
    return "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"


# Kernel penalties added to the loss, by regularization.penalty (Keras' own regularizers).
PENALTIES: dict[str, Callable[[RegularizationConfig], keras.regularizers.Regularizer | None]] = registry(choices.PENALTIES, {
    "none": lambda r: None,
    "l1": lambda r: keras.regularizers.L1(r.l1),
    "l2": lambda r: keras.regularizers.L2(r.l2),
    "l1_l2": lambda r: keras.regularizers.L1L2(l1=r.l1, l2=r.l2),
})


def output_penalty(cfg: Config) -> keras.regularizers.Regularizer | None:
    """The kernel penalty of the output layer: the hidden layers' one with regularization.penalize_output, else none."""
    reg = cfg.regularization
    return PENALTIES[reg.penalty](reg) if reg.penalize_output else None

# Dropout layers by regularization.dropout_kind: alpha dropout keeps SELU's self-normalization.
DROPOUTS = registry(choices.DROPOUT_KINDS, {"dropout": keras.layers.Dropout, "alpha_dropout": keras.layers.AlphaDropout})


def build_model(cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                standardize: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """An MLP, or (model=cnn) conv blocks then the same dense head, ending in the output layer.

    ``standardize``: the training split's per-pixel (mean, std) (dataset.standardize), applied by
    the model's first layer, so the model takes pixels in [0, 1].
    """
    units = hidden_units(cfg.model)
    drop_input, drop_hidden = dropout_flags(cfg, len(units))
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape, name="input")]
    if cfg.dataset.raw_pixels:
        layers.append(raw_pixels())
    if standardize is not None:
        layers.append(standardization(*standardize))
    if cfg.model.name == "cnn":
        layers += _conv_blocks(cfg, input_shape, drop_input)
    else:
        layers.append(keras.layers.Flatten(name="flatten"))
        if cfg.normalization.input:
            layers.append(_batchnorm(cfg, "_input"))
        if drop_input:
            layers.append(_dropout(cfg, "dropout_input"))
    for i, (width, dropout) in enumerate(zip(units, drop_hidden), start=1):
        layers += hidden_block(cfg, i, width, dropout)
    layers.append(output_layer(n_classes, output_penalty(cfg)))
    return keras.Sequential(layers, name=cfg.model.name)


def raw_pixels() -> keras.layers.Rescaling:
    """[0, 1] -> 0-255 (dataset.raw_pixels): the network computes on raw pixel values, as HML's CIFAR-10
    exercise trains, while the saved model takes the same [0, 1] input as every other run's. No weights."""
    return keras.layers.Rescaling(255.0, name=RAW_PIXELS)


def standardization(mean: np.ndarray, std: np.ndarray) -> keras.layers.Rescaling:
    """(x - mean) / std per pixel, as x * (1 / std) - mean / std: Keras' Rescaling with array scale
    and offset, which has no weights (the parameter counts stay the network's) and saves both
    arrays in its config. Computed in float32 under mixed precision too: 1 / std of a nearly
    constant pixel can exceed float16's range.
    """
    return keras.layers.Rescaling(1.0 / std, offset=-mean / std, dtype="float32", name=STANDARDIZE)


def hidden_block(cfg: Config, i: int, width: int, dropout: bool) -> list[keras.layers.Layer]:
    """Dense hidden block i as configured; also the new layers transfer learning adds on top of reused ones."""
    return _block(cfg, keras.layers.Dense(width, name=f"dense_{i}", **_kernel_kwargs(cfg, incoming_axes=[0])), f"_{i}", dropout)


def _conv_blocks(cfg: Config, input_shape: tuple[int, ...], drop_input: bool) -> list[keras.layers.Layer]:
    """Conv2D -> [BN] -> activation -> [BN] -> 2x2 max pooling -> [dropout] per entry of model.filters, then Flatten."""
    layers: list[keras.layers.Layer] = []
    if len(input_shape) == 2:  # grayscale images come without a channel axis
        layers.append(keras.layers.Reshape((*input_shape, 1), name="channels"))
    if cfg.normalization.input:  # per channel, over the batch and the image's rows and columns
        layers.append(_batchnorm(cfg, "_input"))
    if drop_input:
        layers.append(_dropout(cfg, "dropout_input"))
    dropout = cfg.regularization.rate > 0 and cfg.regularization.layers in ("all", "hidden")
    for i, filters in enumerate(cfg.model.filters, start=1):
        # A conv kernel is (rows, cols, in, out): a filter's incoming weights span the first three axes.
        kwargs = _kernel_kwargs(cfg, incoming_axes=[0, 1, 2])
        conv = keras.layers.Conv2D(filters, cfg.model.kernel_size, padding="same", name=f"conv_{i}", **kwargs)
        layers += _block(cfg, conv, f"_conv_{i}", dropout, pool=keras.layers.MaxPooling2D(2, name=f"pool_{i}"))
    layers.append(keras.layers.Flatten(name="flatten"))
    return layers


def _kernel_kwargs(cfg: Config, incoming_axes: list[int]) -> dict:
    """Initializer, penalty and max-norm constraint of a hidden layer's kernel.

    Before-activation BN has its own shift (beta), so the layer's bias would be redundant.
    Max-norm caps the norm of each unit's incoming weights, taken over ``incoming_axes``.
    """
    reg = cfg.regularization
    max_norm = keras.constraints.MaxNorm(reg.max_norm, axis=incoming_axes) if reg.max_norm is not None else None
    return {
        "use_bias": NORMALIZATION_PLACEMENT[cfg.normalization.name] != "before",
        "kernel_initializer": build_initializer(cfg),
        "kernel_regularizer": PENALTIES[reg.penalty](reg),
        "kernel_constraint": max_norm,
    }


def _block(cfg: Config, weights: keras.layers.Layer, suffix: str, dropout: bool, pool: keras.layers.Layer | None = None):
    """weights -> [BN] -> activation -> [BN] -> [pool] -> [dropout], named batchnorm{suffix}, activation{suffix}, ..."""
    placement = NORMALIZATION_PLACEMENT[cfg.normalization.name]
    layers = [weights]
    if placement == "before":
        layers.append(_batchnorm(cfg, suffix))
    layers.append(activation_layer(cfg.activation, f"activation{suffix}"))
    if placement == "after":
        layers.append(_batchnorm(cfg, suffix))
    if pool is not None:
        layers.append(pool)
    if dropout:
        layers.append(_dropout(cfg, f"dropout{suffix}"))
    return layers


def _dropout(cfg: Config, name: str) -> keras.layers.Layer:
    return DROPOUTS[cfg.regularization.dropout_kind](cfg.regularization.rate, name=name)


def _batchnorm(cfg: Config, suffix: str) -> keras.layers.BatchNormalization:
    norm = cfg.normalization
    return keras.layers.BatchNormalization(momentum=norm.momentum, epsilon=norm.epsilon, name=f"batchnorm{suffix}")


def hidden_blocks(model: keras.Model) -> list[tuple[str, str]]:
    """(weight layer, activation layer) names of every hidden block, input side first: conv_i, then dense_i."""
    blocks = []
    for layer in model.layers:
        if layer.name.startswith("conv_"):
            blocks.append((layer.name, f"activation_{layer.name}"))
        elif layer.name.startswith("dense_"):
            blocks.append((layer.name, "activation" + layer.name[len("dense"):]))
    return blocks


def forward(model: keras.Model, x, training_for: tuple[type, ...] = (), record: tuple[str, ...] = ()):
    """Run a Sequential model layer by layer; returns (output, {name: output of each layer in ``record``}).

    Only layers of the types in ``training_for`` run in training mode: MC Dropout needs dropout on
    but batch norm in inference mode, the diagnostics need batch statistics but no dropout noise.
    """
    recorded = {}
    for layer in model.layers:
        x = layer(x, training=isinstance(layer, training_for))
        if layer.name in record:
            recorded[layer.name] = x
    return x, recorded

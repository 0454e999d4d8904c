"""The names of every kind of choice, once: the schema checks a config against them, and the
builders (data.py, model.py, optim.py) key their tables by them through :func:`registry`,
which refuses a table that names other choices. Each name of a config group is also a YAML
file of that group in conf/ (tests/test_config.py). No TensorFlow here.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def registry(names: tuple[str, ...], table: dict[str, T]) -> dict[str, T]:
    """A builder's table of one kind of choice, refused (when its module is imported) unless it has exactly ``names``."""
    if set(table) != set(names):
        raise RuntimeError(f"a table of choices has {sorted(table)}, but the choices are {sorted(names)}")
    return table


DATASETS = ("mnist_5k", "fashion_mnist", "cifar10")
# Classes per dataset, so dataset.classes is checked before any data loads.
DATASET_CLASSES = registry(DATASETS, {"mnist_5k": 10, "fashion_mnist": 10, "cifar10": 10})
SPLITS = ("stratified", "ordered")
MODELS = ("mlp", "cnn")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "gelu", "swish", "mish")
INITIALIZERS = (
    "auto", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_uniform", "glorot_normal", "variance_scaling",
)
NORMALIZATIONS = ("none", "batchnorm_before", "batchnorm_after")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop", "adagrad", "adamw", "adamax", "adadelta", "adafactor", "ftrl", "lion")
SCHEDULERS = ("constant", "power", "exponential", "performance", "piecewise", "one_cycle", "cosine")
SCHEDULE_UNITS = ("step", "epoch")
CLIPPINGS = ("none", "value", "norm", "global_norm")
DROPOUT_LAYERS = ("all", "hidden", "input", "last")
DROPOUT_KINDS = ("dropout", "alpha_dropout")
PENALTIES = ("none", "l1", "l2", "l1_l2")
MONITORS = ("val_loss", "val_accuracy")
KEEPS = ("best", "last")
SHUFFLES = ("epoch", "once", "none")  # trainer.shuffle: a new order every epoch, one order for all, the split's own
MODES = ("train", "lr_find", "plot_schedule")
TRANSFERS = ("none", "frozen", "finetune", "mobilenet_v2")
STRATEGIES = ("default", "mirrored", "multi_worker")
BACKENDS = ("tensorflow", "jax")
WANDB_MODES = ("offline", "online", "disabled")
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg")
VARIANCE_SCALING_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
# What a sweep may rank by: metrics of the model the run keeps, the one in model.keras. (best_val_accuracy,
# the highest val_accuracy in history.csv, need not be that model's: keep=last, or a val_loss monitor.)
OPTIMIZED_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
# MobileNetV2's published ImageNet weights exist only for these widths and input sizes.
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)

# Activations, initializers and optimizers are Keras' own: a YAML's `name` goes through
# keras.activations.get, keras.initializers.get or keras.optimizers.get (model.py, optim.py), so a
# user's YAML (--config-dir) adds a choice without code. These are the identifiers Keras resolves
# (Keras 3.15; tests/test_optim.py holds them equal to Keras' registries), so a misspelt name is
# refused without loading TensorFlow. Not listed: the abstract bases and the optimizer wrappers
# (lossscaleoptimizer, multioptimizer, optimizermap), which need another optimizer to wrap.
KERAS_ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu",
    "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid",
    "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink", "threshold",
)
KERAS_INITIALIZERS = (
    "constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal",
    "lecun_uniform", "normal", "one", "ones", "orthogonal", "random_normal", "random_uniform", "stft",
    "truncated_normal", "uniform", "variance_scaling", "zero", "zeros",
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity", "IdentityInitializer",
    "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "OrthogonalInitializer", "RandomNormal",
    "RandomUniform", "STFT", "STFTInitializer", "TruncatedNormal", "VarianceScaling", "Zeros",
)
KERAS_OPTIMIZERS = (
    "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "muon", "nadam",
    "rmsprop", "schedulefreeadamw", "sgd",
)

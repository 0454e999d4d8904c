"""The config schema: one dataclass per config group, checked before TensorFlow loads.

Hydra composes the YAML files in ``conf/``; :func:`validate` merges the result into
these dataclasses (which catches wrong types and unknown keys) and then checks the
ranges and names, so every mistake is reported with the command-line key, the value
and what is allowed, before anything trains or is written. No TensorFlow here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from dnnexp.layout import MODEL
from dnnexp.typos import unknown_key

# The vocabulary of every named choice; each name is also a YAML file in its conf/ group.
DATASETS = ("mnist_5k", "fashion_mnist", "cifar10")
SPLITS = ("stratified", "ordered")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "gelu", "swish", "mish")
INITIALIZERS = (
    "auto", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_uniform", "glorot_normal", "variance_scaling",
)
NORMALIZATIONS = ("none", "batchnorm_before", "batchnorm_after")
MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop", "adagrad", "adamw", "adamax", "adadelta", "adafactor", "ftrl", "lion")

# Activations, initializers and optimizers are Keras' own: a YAML's `name` goes through
# keras.activations.get, keras.initializers.get or keras.optimizers.get (model.py, optim.py), so a
# user's YAML (--config-dir) adds a choice without code. These are the identifiers Keras resolves
# (Keras 3.15; a test holds them equal to Keras' registries), so a misspelt name is refused here,
# without loading TensorFlow. Not listed: the abstract bases and the optimizer wrappers
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
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg")
VARIANCE_SCALING_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
SCHEDULERS = ("constant", "power", "exponential", "performance", "piecewise", "one_cycle", "cosine")
SCHEDULE_UNITS = ("step", "epoch")
CLIPPINGS = ("none", "value", "norm", "global_norm")
DROPOUT_LAYERS = ("all", "hidden", "input", "last")
MONITORS = ("val_loss", "val_accuracy")
KEEPS = ("best", "last")
SHUFFLES = ("epoch", "once", "none")
PENALTIES = ("none", "l1", "l2", "l1_l2")
DROPOUT_KINDS = ("dropout", "alpha_dropout")
MODES = ("train", "lr_find", "plot_schedule")
TRANSFERS = ("none", "frozen", "finetune", "mobilenet_v2")
STRATEGIES = ("default", "mirrored", "multi_worker")
BACKENDS = ("tensorflow", "jax")

# Classes per dataset, so a task split (dataset.classes) is checked before any data loads.
DATASET_CLASSES = {"mnist_5k": 10, "fashion_mnist": 10, "cifar10": 10}


class ConfigError(ValueError):
    """A config value a user set is not allowed; the message says which and why."""


@dataclass
class DatasetConfig:
    name: str = "mnist_5k"
    data_dir: str | None = None
    val_size: int = 500
    test_size: int = 1000  # only for mnist_5k, which has no test split of its own
    limit: int | None = None
    standardize: bool = False
    raw_pixels: bool = False  # the network computes on 0-255 (HML's CIFAR-10 exercise); the model still takes [0, 1]
    split_seed: int = 0  # fixes which samples are validation and test, whatever trainer.seed is
    split: str = "stratified"  # validation: a seeded stratified sample, or ordered: the training file's last val_size
    classes: list[int] | None = None  # keep only these classes, relabelled 0, 1, ... in this order (a task split)


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden_layers: int = 2
    units: Any = 100  # an int for every hidden layer, or a list of ints (one per layer)
    filters: list[int] = field(default_factory=lambda: [32, 64])  # cnn: one conv block per entry
    kernel_size: int = 3  # cnn


# In the activation, initializer and optimizer groups every key a YAML sets, other than `name` (and
# the optimizer's `lr`), is an argument of the Keras object: the keys below are typed and checked
# here (None: not set, Keras' default), any other key goes into `args` as it is (validate).
@dataclass
class ActivationConfig:
    name: str = "relu"
    alpha: float | None = None  # leaky_relu's negative slope; elu's and celu's alpha
    args: dict[str, Any] = field(default_factory=dict)  # the YAML's other keys: the activation's own arguments


@dataclass
class InitializerConfig:
    name: str = "auto"
    scale: float | None = None  # variance_scaling: variance = scale / fan
    mode: str | None = None  # variance_scaling: fan_in, fan_out or fan_avg
    distribution: str | None = None  # variance_scaling: truncated_normal, untruncated_normal or uniform
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class NormalizationConfig:
    name: str = "none"
    momentum: float = 0.99  # Keras' momentum; the lecture's EMA weight is alpha = 1 - momentum
    epsilon: float = 1e-3
    input: bool = False  # also batch-normalize the input (right after Flatten; for a CNN, the image)


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.01  # Keras' learning_rate
    momentum: float | None = None
    nesterov: bool | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    rho: float | None = None
    weight_decay: float | None = None  # decoupled weight decay (adamw, lion, ...)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    name: str = "constant"
    unit: str = "step"  # what t and every length below count: optimizer steps, or finished epochs
    s: float = 1000.0  # step size, in steps or epochs (power, exponential)
    c: float = 1.0  # power (power)
    factor: float = 0.5  # performance: lr <- lr * factor
    patience: int = 2  # performance: epochs without val_loss improvement
    min_lr: float = 0.0
    boundaries: list[int] = field(default_factory=list)  # piecewise: steps (or epochs) where the rate changes
    values: list[float] = field(default_factory=list)  # piecewise: the rates, one more than boundaries
    total_steps: int | None = None  # one_cycle, cosine: null = the whole run (epochs x steps per epoch)
    start_factor: float = 0.1  # one_cycle: starting rate = optimizer.lr * start_factor
    end_factor: float = 0.001  # one_cycle: final rate = optimizer.lr * end_factor
    final_fraction: float = 0.1  # one_cycle: share of the steps spent in the final decay
    warmup_steps: int = 0  # cosine: linear warm-up from 0 to optimizer.lr over these steps
    alpha: float = 0.0  # cosine: the rate ends at optimizer.lr * alpha


@dataclass
class ClippingConfig:
    name: str = "none"
    threshold: float = 1.0


@dataclass
class RegularizationConfig:
    name: str = "none"
    rate: float = 0.0  # dropout rate; 0 means no dropout layers
    layers: str = "all"
    last_k: int = 2
    early_stopping: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    restore_best_weights: bool = True
    dropout_kind: str = "dropout"  # or alpha_dropout (keeps SELU's mean and variance)
    penalty: str = "none"  # kernel penalty added to the loss: none, l1, l2, l1_l2
    l1: float = 0.01
    l2: float = 0.01
    penalize_output: bool = False  # the penalty on the output layer's kernel too
    max_norm: float | None = None  # max-norm constraint on each unit's incoming weights


@dataclass
class EvaluationConfig:
    mc_samples: int = 0  # MC Dropout: predictions averaged over this many passes with dropout on (0 = off)


@dataclass
class DiagnosticsConfig:
    enabled: bool = False
    batch_size: int = 256  # the fixed training batch every measurement uses
    vanishing_below: float = 0.1  # grad_ratio below this: vanishing
    exploding_above: float = 10.0  # grad_ratio above this: exploding


@dataclass
class LrFindConfig:
    min_lr: float = 1e-5
    max_lr: float = 10.0
    stop_factor: float = 4.0  # stop once the smoothed loss exceeds this many times its minimum


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 32
    seed: int = 42
    # The training samples' order: a new seeded order every epoch (epoch, what fit(shuffle=True) documents),
    # one seeded order for every epoch (once), or the split's own order (none, fit(shuffle=False)).
    shuffle: str = "epoch"
    verbose: bool = True
    backend: str = "tensorflow"  # Keras' backend: tensorflow or jax (pip install 'dnnexp[jax]')
    # How fast, and where: see README "Performance". "auto" or an int for the two below.
    steps_per_execution: Any = "auto"  # training steps per call into the backend
    threads: Any = "auto"  # threads of this process's training step (TensorFlow's pools, XLA's on JAX)
    jit_compile: Any = "auto"  # XLA: auto is off on TensorFlow (slower for small MLPs on CPU), always on on JAX
    strategy: str = "default"  # tf.distribute: default, mirrored (local GPUs), multi_worker (TF_CONFIG)
    mixed_precision: bool = False  # float16 compute, float32 variables and output (GPUs)
    # The weights a run keeps (model.keras, val_*, test_*, MC Dropout): those of its best epoch by
    # `monitor` (best), or of its last epoch (last). monitor null: regularization.monitor.
    keep: str = "best"
    monitor: str | None = None


@dataclass
class MlflowLoggerConfig:
    tracking_uri: str = "sqlite:///outputs/mlflow.db"  # a local SQLite store, or an MLflow server's URL
    log_model: bool = False  # also model.keras, as an artifact


@dataclass
class WandbLoggerConfig:
    mode: str = "offline"  # offline (outputs/wandb, sync later), online, disabled
    project: str | None = None  # null: task_name
    entity: str | None = None
    dir: str = "outputs"  # offline runs go into <dir>/wandb/
    log_model: bool = False


@dataclass
class TensorBoardLoggerConfig:
    histogram_freq: int = 0  # epochs between weight histograms (0: none)


@dataclass
class LoggerConfig:
    """The experiment trackers of conf/logger/, each present when chosen (logger=[mlflow,tensorboard])."""

    mlflow: MlflowLoggerConfig | None = None
    wandb: WandbLoggerConfig | None = None
    tensorboard: TensorBoardLoggerConfig | None = None


@dataclass
class TransferConfig:
    """Reuse a pretrained network (lecture: "Transfer Learning"); see conf/transfer/."""

    name: str = "none"
    source: str | None = None  # a .keras file or a dnnexp run folder; null: pretrain task A (below), cached
    pretrain_classes: list[int] | None = None  # task A: these classes of the same dataset and split
    pretrain_epochs: int = 10
    pretrain_seed: int = 0
    cache_dir: str = "outputs/pretrained"  # pretrained task-A runs, one folder per config hash
    reuse_layers: int | None = None  # the lower hidden blocks to reuse; null: all of them
    new_units: list[int] = field(default_factory=list)  # new hidden layers on top of the reused ones
    frozen_epochs: int | None = None  # null: trainer.epochs - finetune_epochs
    finetune_epochs: int = 0
    unfreeze_top: int = 1  # reused blocks (or base layers) made trainable again for the fine-tuning phase
    lr_factor: float = 0.1  # fine-tuning learning rate = optimizer.lr * lr_factor
    resize: bool = False  # resize and channel-map inputs to the source's input shape
    weights: str | None = "imagenet"  # mobilenet_v2: pretrained weights, or null for random ones
    input_size: int = 96  # mobilenet_v2: images are resized to input_size x input_size x 3
    alpha: float = 0.35  # mobilenet_v2: width multiplier


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    initializer: InitializerConfig = field(default_factory=InitializerConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    clipping: ClippingConfig = field(default_factory=ClippingConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    lr_find: LrFindConfig = field(default_factory=LrFindConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    mode: str = "train"
    optimized_metric: str = "val_accuracy"
    task_name: str = "train"
    # What the sweep is expected to show, checked by the report (results/claims.py); presets state theirs.
    claims: list[str] = field(default_factory=list)
    # The practical margin of those claims without their own "within D" (None: 0.005 for accuracies, 0.01 for losses).
    claims_margin: float | None = None


# What a sweep may rank by: metrics of the model the run keeps, the one in model.keras. (best_val_accuracy,
# the highest val_accuracy in history.csv, need not be that model's: keep=last, or a val_loss monitor.)
OPTIMIZED_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")


def validate(cfg: DictConfig) -> Config:
    """Return the typed config, or raise ConfigError naming the first bad key."""
    user = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        user = _collect_arguments(user)
        typed = OmegaConf.merge(OmegaConf.structured(Config), user)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe_type_error(err)) from None
    config: Config = OmegaConf.to_object(typed)  # type: ignore[assignment]
    _check_ranges(config)
    return config


# The keys a whole sweep shares that its sweeper reads before any job has checked its own config.
SWEEP_KEYS = ("claims_margin",)


def validate_sweep(cfg: DictConfig) -> None:
    """Raise ConfigError, worded as validate words it, naming the first bad key of SWEEP_KEYS in a multirun's config.

    Each job of a sweep validates its own config; the claims sweeper reads claims_margin before
    any job starts, so a bad margin is refused at the door of the whole command."""
    validate(OmegaConf.create({key: cfg[key] for key in SWEEP_KEYS if key in cfg}))


# The groups whose YAMLs name a Keras object and may pass it any argument.
KERAS_GROUPS = {"activation": ActivationConfig, "initializer": InitializerConfig, "optimizer": OptimizerConfig}


def _collect_arguments(user: DictConfig) -> DictConfig:
    """Move the keys of an activation, initializer or optimizer YAML that the schema does not type into its `args`."""
    user = copy.deepcopy(user)
    for group, schema in KERAS_GROUPS.items():
        node = user.get(group)
        if not isinstance(node, DictConfig):
            continue
        typed = {f.name for f in dataclasses.fields(schema)}
        extra = {key: node[key] for key in node if key not in typed}
        if extra:
            OmegaConf.set_struct(user, False)
            user[group] = {**{k: node[k] for k in node if k in typed}, "args": {**node.get("args", {}), **extra}}
    return user


def keras_arguments(group: ActivationConfig | InitializerConfig | OptimizerConfig) -> dict[str, Any]:
    """The keyword arguments of the group's Keras object: every key the YAML set but `name` and `lr`."""
    typed = {f.name: getattr(group, f.name) for f in dataclasses.fields(group) if f.name not in ("name", "lr", "args")}
    return {**{key: value for key, value in typed.items() if value is not None}, **group.args}


def _describe_type_error(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "config"
    msg = str(err).splitlines()[0]
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key(err) or f"{key} is not a known key ({msg})"
    if isinstance(err, ValidationError):
        value = getattr(err, "value", None)
        shown = repr(value) if isinstance(value, str) else str(value)
        return f"{key} must be {_expected_type(key)}, got {shown}"
    return f"{key}: {msg}"


def _expected_type(full_key: str) -> str:
    node: Any = Config
    for part in full_key.split("."):
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return "a value of the right type"
        node = hints[part]
    allowed = [t for t in typing.get_args(node) if t is not type(None)] or [node]
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(allowed[0], getattr(allowed[0], "__name__", str(allowed[0])))


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _keras_name(key: str, value: str, builtin: tuple[str, ...], keras_names: tuple[str, ...], resolver: str) -> None:
    if value not in builtin and value not in keras_names:
        raise ConfigError(
            f"{key} must be one of {', '.join(builtin)}, or any other identifier {resolver} resolves "
            f"(e.g. {', '.join([n for n in keras_names if n not in builtin][:3])}); got {value!r}"
        )


def _optional(check, key: str, value: Any, *args, **kwargs) -> None:
    """A key the schema types but a YAML need not set (None: Keras' default): checked when set."""
    if value is not None:
        check(key, value, *args, **kwargs)


def _in_range(key: str, value: float, low: float, high: float, *, low_open=False, high_open=False) -> None:
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if bad_low or bad_high or (isinstance(value, float) and math.isnan(value)):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ConfigError(f"{key} must be in {lo}{low}, {high}{hi}, got {value}")


def _positive(key: str, value: float) -> None:
    _in_range(key, value, 0, math.inf, low_open=True, high_open=True)


def _auto_or_positive_int(key: str, value: Any) -> None:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{key} must be auto or a positive integer, got {value!r}")


def _check_tf_config(text: str | None) -> None:
    """multi_worker reads the cluster from TF_CONFIG; without it TensorFlow trains as one local worker."""
    if text is None:
        return
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
        raise ConfigError(f"TF_CONFIG must be JSON with 'cluster' and 'task' for trainer.strategy=multi_worker, got {text!r}")


def _check_ranges(c: Config) -> None:
    """Range and name checks, next to the schema they guard (scikit-learn style)."""
    d = c.dataset
    _one_of("dataset.name", d.name, DATASETS)
    _in_range("dataset.val_size", d.val_size, 1, math.inf)
    _in_range("dataset.test_size", d.test_size, 1, math.inf)
    if d.limit is not None:
        _in_range("dataset.limit", d.limit, 1, math.inf)
    _check_classes("dataset.classes", d.classes, d.name)
    _one_of("dataset.split", d.split, SPLITS)
    if d.raw_pixels and d.standardize:
        raise ConfigError("dataset.raw_pixels=true and dataset.standardize=true contradict each other: choose one")
    if d.split == "ordered" and d.name == "mnist_5k":
        raise ConfigError("dataset.split=ordered needs a dataset with a test split of its own (fashion_mnist, cifar10); "
                          "mnist_5k's file is sorted by class")

    _one_of("model.name", c.model.name, MODELS)
    _in_range("model.hidden_layers", c.model.hidden_layers, 0, 1000)
    units = c.model.units
    unit_list = units if isinstance(units, list) else [units]
    for u in unit_list:
        if isinstance(u, bool) or not isinstance(u, int) or u < 1:
            raise ConfigError(f"model.units must be a positive integer or a list of them, got {units!r}")
    if not c.model.filters or any(f < 1 for f in c.model.filters):
        raise ConfigError(f"model.filters must be a non-empty list of positive integers, got {c.model.filters!r}")
    _in_range("model.kernel_size", c.model.kernel_size, 1, math.inf)

    _keras_name("activation.name", c.activation.name, ACTIVATIONS, KERAS_ACTIVATIONS, "keras.activations.get")
    if c.activation.name == "leaky_relu":  # a slope; elu's and celu's alpha is any positive scale (Keras checks it)
        _optional(_in_range, "activation.alpha", c.activation.alpha, 0, 1)
    init = c.initializer
    _keras_name("initializer.name", init.name, INITIALIZERS, KERAS_INITIALIZERS, "keras.initializers.get")
    _optional(_positive, "initializer.scale", init.scale)
    _optional(_one_of, "initializer.mode", init.mode, VARIANCE_SCALING_MODES)
    _optional(_one_of, "initializer.distribution", init.distribution, VARIANCE_SCALING_DISTRIBUTIONS)

    n = c.normalization
    _one_of("normalization.name", n.name, NORMALIZATIONS)
    _in_range("normalization.momentum", n.momentum, 0, 1)
    _positive("normalization.epsilon", n.epsilon)

    o = c.optimizer
    _keras_name("optimizer.name", o.name, OPTIMIZERS, KERAS_OPTIMIZERS, "keras.optimizers.get")
    _positive("optimizer.lr", o.lr)
    for key in ("momentum", "beta_1", "beta_2", "rho"):
        _optional(_in_range, f"optimizer.{key}", getattr(o, key), 0, 1, high_open=True)
    _optional(_in_range, "optimizer.weight_decay", o.weight_decay, 0, math.inf)

    s = c.scheduler
    _one_of("scheduler.name", s.name, SCHEDULERS)
    _one_of("scheduler.unit", s.unit, SCHEDULE_UNITS)
    _positive("scheduler.s", s.s)
    _in_range("scheduler.c", s.c, 0, math.inf, low_open=True, high_open=True)
    _in_range("scheduler.factor", s.factor, 0, 1, low_open=True, high_open=True)
    _in_range("scheduler.patience", s.patience, 0, math.inf)
    _in_range("scheduler.min_lr", s.min_lr, 0, math.inf)
    _check_new_schedules(s)

    _one_of("clipping.name", c.clipping.name, CLIPPINGS)
    _positive("clipping.threshold", c.clipping.threshold)

    r = c.regularization
    _in_range("regularization.rate", r.rate, 0, 1, high_open=True)
    _one_of("regularization.layers", r.layers, DROPOUT_LAYERS)
    _in_range("regularization.last_k", r.last_k, 1, math.inf)
    _one_of("regularization.monitor", r.monitor, MONITORS)
    _in_range("regularization.patience", r.patience, 0, math.inf)
    _one_of("regularization.dropout_kind", r.dropout_kind, DROPOUT_KINDS)
    _one_of("regularization.penalty", r.penalty, PENALTIES)
    _in_range("regularization.l1", r.l1, 0, math.inf)
    _in_range("regularization.l2", r.l2, 0, math.inf)
    if r.max_norm is not None:
        _positive("regularization.max_norm", r.max_norm)

    t = c.trainer
    _in_range("trainer.epochs", t.epochs, 1, math.inf)
    _in_range("trainer.batch_size", t.batch_size, 1, math.inf)
    _in_range("trainer.seed", t.seed, 0, 2**32 - 1)
    _one_of("trainer.shuffle", t.shuffle, SHUFFLES)
    _auto_or_positive_int("trainer.steps_per_execution", t.steps_per_execution)
    _auto_or_positive_int("trainer.threads", t.threads)
    _one_of("trainer.strategy", t.strategy, STRATEGIES)
    _check_backend(t)
    _check_keep(c)
    if t.strategy == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
    _one_of("optimized_metric", c.optimized_metric, OPTIMIZED_METRICS)
    _optional(_in_range, "claims_margin", c.claims_margin, 0, math.inf, high_open=True)
    _check_transfer(c)
    _check_tools(c)
    _check_loggers(c.logger)


WANDB_MODES = ("offline", "online", "disabled")


def _check_loggers(logger: LoggerConfig) -> None:
    """Each chosen tracker's package must be installed (the extra of the same name installs it)."""
    for name in ("mlflow", "wandb", "tensorboard"):
        if getattr(logger, name) is not None and importlib.util.find_spec(name) is None:
            raise ConfigError(f"logger={name} needs the {name} package: pip install 'dnnexp[{name}]'")
    if logger.wandb is not None:
        _one_of("logger.wandb.mode", logger.wandb.mode, WANDB_MODES)
    if logger.tensorboard is not None:
        _in_range("logger.tensorboard.histogram_freq", logger.tensorboard.histogram_freq, 0, math.inf)


def keep_monitor(c: Config) -> str:
    """The metric trainer.keep=best picks the epoch by: trainer.monitor, else early stopping's regularization.monitor."""
    return c.trainer.monitor or c.regularization.monitor


def _check_keep(c: Config) -> None:
    """trainer.keep=best and early stopping's restore_best_weights must not pick two different epochs."""
    t, r = c.trainer, c.regularization
    _one_of("trainer.keep", t.keep, KEEPS)
    if t.monitor is not None:
        _one_of("trainer.monitor", t.monitor, MONITORS)
    if t.keep == "best" and r.early_stopping and r.restore_best_weights and keep_monitor(c) != r.monitor:
        raise ConfigError(
            f"trainer.monitor={t.monitor} and regularization.monitor={r.monitor} would keep two different best epochs "
            "(trainer.keep=best and early stopping's restore_best_weights); set them to the same metric, "
            "or regularization.restore_best_weights=false"
        )


def _check_backend(t: TrainerConfig) -> None:
    """The backend exists and is installed, and the trainer's other settings have a meaning on it."""
    _one_of("trainer.backend", t.backend, BACKENDS)
    if t.jit_compile not in ("auto", True, False):
        raise ConfigError(f"trainer.jit_compile must be auto, true or false, got {t.jit_compile!r}")
    if t.backend != "jax":
        return
    if importlib.util.find_spec("jax") is None:
        raise ConfigError("trainer.backend=jax needs JAX: pip install 'dnnexp[jax]'")
    if t.jit_compile is False:
        raise ConfigError("trainer.jit_compile=false is not available with trainer.backend=jax: JAX runs every step "
                          "through XLA (use auto or true)")
    if t.strategy != "default":
        raise ConfigError(f"trainer.strategy={t.strategy} needs trainer.backend=tensorflow (it is a tf.distribute "
                          "strategy); with trainer.backend=jax use trainer.strategy=default")


def _check_new_schedules(s: SchedulerConfig) -> None:
    if s.name == "piecewise":
        if len(s.values) != len(s.boundaries) + 1:
            raise ConfigError(
                f"scheduler.values must have one more entry than scheduler.boundaries, got {len(s.values)} values "
                f"for {len(s.boundaries)} boundaries"
            )
        if s.boundaries != sorted(set(s.boundaries)) or any(b < 1 for b in s.boundaries):
            raise ConfigError(f"scheduler.boundaries must be increasing positive {s.unit} counts, got {s.boundaries}")
        for v in s.values:
            _positive("scheduler.values", v)
    if s.total_steps is not None:
        _in_range("scheduler.total_steps", s.total_steps, 1, math.inf)
    _in_range("scheduler.start_factor", s.start_factor, 0, 1, low_open=True)
    _in_range("scheduler.end_factor", s.end_factor, 0, 1)
    _in_range("scheduler.final_fraction", s.final_fraction, 0, 1, high_open=True)
    _in_range("scheduler.warmup_steps", s.warmup_steps, 0, math.inf)
    _in_range("scheduler.alpha", s.alpha, 0, 1)


def _check_tools(c: Config) -> None:
    """MC Dropout, diagnostics, the learning-rate finder and the run mode."""
    _one_of("mode", c.mode, MODES)
    if c.mode == "plot_schedule" and c.scheduler.name == "performance":
        raise ConfigError("scheduler=performance cannot be plotted before training: its cuts depend on the validation loss")
    _in_range("evaluation.mc_samples", c.evaluation.mc_samples, 0, math.inf)
    if c.evaluation.mc_samples > 0 and c.regularization.rate == 0:
        raise ConfigError(
            f"evaluation.mc_samples={c.evaluation.mc_samples} needs dropout: set regularization=dropout "
            "(regularization.rate > 0)"
        )
    d = c.diagnostics
    if d.enabled and c.transfer.name == "none" and c.model.name == "mlp" and not hidden_units(c.model):
        key = "model.units=[]" if isinstance(c.model.units, list) else f"model.hidden_layers={c.model.hidden_layers}"
        raise ConfigError(f"diagnostics=on measures the hidden layers, and {key} builds none; add hidden layers or set diagnostics=off")
    _in_range("diagnostics.batch_size", d.batch_size, 1, math.inf)
    _in_range("diagnostics.vanishing_below", d.vanishing_below, 0, 1, low_open=True, high_open=True)
    _in_range("diagnostics.exploding_above", d.exploding_above, 1, math.inf, low_open=True, high_open=True)
    f = c.lr_find
    _positive("lr_find.min_lr", f.min_lr)
    _in_range("lr_find.max_lr", f.max_lr, f.min_lr, math.inf, low_open=True, high_open=True)
    _in_range("lr_find.stop_factor", f.stop_factor, 1, math.inf, low_open=True)


def _check_classes(key: str, classes: list[int] | None, dataset: str) -> None:
    if classes is None:
        return
    n = DATASET_CLASSES.get(dataset, 10)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= k < n for k in classes):
        raise ConfigError(f"{key} must list at least 2 different class numbers in [0, {n - 1}], got {classes}")


# MobileNetV2's published ImageNet weights exist only for these widths and input sizes.
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)


def _check_transfer(c: Config) -> None:
    t = c.transfer
    _one_of("transfer.name", t.name, TRANSFERS)
    if t.name == "none":
        return
    if c.dataset.raw_pixels and (t.name == "mobilenet_v2" or t.source is not None):
        raise ConfigError(f"dataset.raw_pixels=true cannot change the input of a pretrained network (transfer={t.name}"
                          f"{'' if t.source is None else ' with transfer.source'}): its first layers keep the scaling it was trained with")
    if t.name != "mobilenet_v2":
        _check_source(t, c.dataset.name)
        if t.reuse_layers is not None:
            _in_range("transfer.reuse_layers", t.reuse_layers, 1, math.inf)
    for u in t.new_units:
        _in_range("transfer.new_units", u, 1, math.inf)
    _check_phases(t, c.trainer.epochs)
    if t.name == "mobilenet_v2" and c.diagnostics.enabled and not t.new_units:
        raise ConfigError("diagnostics=on measures dnnexp's hidden blocks; with transfer=mobilenet_v2 add some with transfer.new_units")
    if t.name == "mobilenet_v2":
        _positive("transfer.alpha", t.alpha)
        _in_range("transfer.input_size", t.input_size, 32, math.inf)  # MobileNetV2's smallest input
        _check_weights(t)


def _check_weights(t: TransferConfig) -> None:
    if t.weights is None:
        return
    if t.weights != "imagenet":
        if not Path(t.weights).is_file():
            raise ConfigError(f"transfer.weights must be imagenet, null or a weights file, got {t.weights!r} (no such file)")
        return
    for key, value, allowed in (("input_size", t.input_size, IMAGENET_SIZES), ("alpha", t.alpha, IMAGENET_ALPHAS)):
        if value not in allowed:
            shown = ", ".join(str(a) for a in allowed)
            raise ConfigError(f"transfer.{key} must be one of {shown} with transfer.weights=imagenet, got {value}")


def _check_source(t: TransferConfig, dataset: str) -> None:
    if t.source is None:
        if t.pretrain_classes is None:
            raise ConfigError(
                f"transfer={t.name} needs transfer.source (a .keras file or a dnnexp run folder) "
                "or transfer.pretrain_classes (task A, pretrained first)"
            )
        _check_classes("transfer.pretrain_classes", t.pretrain_classes, dataset)
        _in_range("transfer.pretrain_epochs", t.pretrain_epochs, 1, math.inf)
        _in_range("transfer.pretrain_seed", t.pretrain_seed, 0, 2**32 - 1)
        return
    path = Path(t.source)
    if not path.exists():
        raise ConfigError(f"transfer.source={t.source} does not exist (expected a .keras file or a dnnexp run folder)")
    if path.is_dir() and not (path / MODEL).is_file():
        raise ConfigError(f"transfer.source={t.source} is a folder without {MODEL} (not a finished dnnexp run)")


def _check_phases(t: TransferConfig, epochs: int) -> None:
    """Phase 1 trains with every reused layer frozen; phase 2 unfreezes the top ones at a lower rate."""
    _in_range("transfer.finetune_epochs", t.finetune_epochs, 0, math.inf)
    if t.frozen_epochs is not None:
        _in_range("transfer.frozen_epochs", t.frozen_epochs, 1, math.inf)
    frozen, finetune = phase_epochs(t, epochs)
    if frozen < 1:
        raise ConfigError(
            f"transfer.finetune_epochs={t.finetune_epochs} must be less than trainer.epochs={epochs} "
            "(transfer.frozen_epochs=null trains the rest of trainer.epochs frozen)"
        )
    if finetune:
        _in_range("transfer.unfreeze_top", t.unfreeze_top, 1, math.inf)
    _in_range("transfer.lr_factor", t.lr_factor, 0, 1, low_open=True)  # 1: on at the same rate (HML ch. 11)


def phase_epochs(t: TransferConfig, epochs: int) -> tuple[int, int]:
    """(frozen, fine-tuning) epochs. transfer=frozen never fine-tunes, so one sweep over
    transfer=none,frozen,finetune accepts the same overrides in every job; frozen_epochs=null
    leaves trainer.epochs in total."""
    finetune = 0 if t.name == "frozen" else t.finetune_epochs
    frozen = epochs - finetune if t.frozen_epochs is None else t.frozen_epochs
    return frozen, finetune


# Keys that change how a run goes or what it shows, never what it computes: how fast it runs
# (threads, steps per call, the tf.distribute strategy), what it logs (verbose, tensorboard),
# its folder's name, the metric a sweeper reads, the claims a sweep's report checks and the
# experiment trackers it reports to (the whole logger group).
# config_hash leaves them out, so setting one neither trains a finished run again nor misses
# the task-A cache, and a killed run resumes under it; every other key, including any added
# to the schema later, changes the hash.
UNHASHED_KEYS = frozenset({
    "trainer.verbose", "trainer.threads", "trainer.steps_per_execution", "trainer.strategy",
    "task_name", "optimized_metric", "claims", "claims_margin", "logger",
})


def hashed_config(cfg: Config) -> dict[str, Any]:
    """The config as {dotted key: value}, without UNHASHED_KEYS: what decides what a run computes."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if f"{prefix}{key}" in UNHASHED_KEYS:
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(dataclasses.asdict(cfg), "")
    return json.loads(json.dumps(flat))  # as a backup's JSON header gives it back


def config_hash(cfg: Config) -> str:
    """Twelve hex digits of the SHA-256 of :func:`hashed_config`.

    metrics.json and a run's backup keep it, so a command pointed at a folder knows whether
    the run there is its own (resume it, or report it finished) or another config's (refuse).
    """
    return hashlib.sha256(json.dumps(hashed_config(cfg), sort_keys=True).encode()).hexdigest()[:12]


def first_difference(here: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The first key whose value differs between two hashed configs, as `key: A here, B in this command`."""
    for key in [*here, *(k for k in wanted if k not in here)]:
        if key not in here or key not in wanted or here[key] != wanted[key]:
            old, new = (_shown(c[key]) if key in c else "not set" for c in (here, wanted))
            return f"{key}: {old} here, {new} in this command"
    return "no key differs, yet the config hash does"


def _shown(value: Any) -> str:
    """A value as the command line writes it: relu, 0.05, true, null, [8, 9]."""
    return value if isinstance(value, str) else json.dumps(value)


def hidden_units(model: ModelConfig) -> list[int]:
    """Units per hidden layer: a list sets sizes and depth; an int repeats hidden_layers times."""
    if isinstance(model.units, list):
        return list(model.units)
    return [model.units] * model.hidden_layers

"""The config schema: one dataclass per config group, each field with its type, default, allowed values and meaning.

Hydra composes the YAML files in ``conf/``; validation.validate merges the result into these
dataclasses (which catches wrong types and unknown keys), then checks each field against the
constraints declared with it and runs each dataclass's ``check``, the rules that span its
fields. No TensorFlow here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnnexp.config import choices
from dnnexp.config.constraints import (
    FRACTION, POSITIVE, SEED, ConfigError, Each, Interval, KerasName, OneOf, Satisfies, is_count, setting,
)
from dnnexp.layout import MODEL

COUNT = Interval(1)
NON_NEGATIVE = Interval(0)
UNIT = Interval(0, 1)  # [0, 1]
OPEN_UNIT = Interval(0, 1, "neither")
AUTO_OR_COUNT = Satisfies("auto or a positive integer", lambda v: v == "auto" or is_count(v))


@dataclass
class DatasetConfig:
    name: str = setting("mnist_5k", "the data: mnist_5k (embedded, offline), fashion_mnist or cifar10", OneOf(choices.DATASETS))
    data_dir: str | None = setting(None, "a folder with the dataset's original files; null: download through Keras")
    val_size: int = setting(500, "validation samples", COUNT)
    test_size: int = setting(1000, "test samples (only mnist_5k, which has no test split of its own)", COUNT)
    limit: int | None = setting(None, "keep only this many training samples; null: all", COUNT)
    standardize: bool = setting(False, "standardize each pixel by the training split's mean and std")
    raw_pixels: bool = setting(False, "the network computes on 0-255 (HML's CIFAR-10 exercise); the model still takes [0, 1]")
    split_seed: int = setting(0, "fixes which samples are validation and test, whatever trainer.seed is", SEED)
    split: str = setting("stratified", "validation: a seeded stratified sample, or ordered: the training file's last val_size",
                         OneOf(choices.SPLITS))
    classes: list[int] | None = setting(None, "keep only these classes, relabelled 0, 1, ... in this order (a task split)")

    def check(self) -> None:
        check_classes("dataset.classes", self.classes, self.name)
        if self.raw_pixels and self.standardize:
            raise ConfigError("dataset.raw_pixels=true and dataset.standardize=true contradict each other: choose one")
        if self.split == "ordered" and self.name == "mnist_5k":
            raise ConfigError("dataset.split=ordered needs a dataset with a test split of its own (fashion_mnist, cifar10); "
                              "mnist_5k's file is sorted by class")


def check_classes(key: str, classes: list[int] | None, dataset: str) -> None:
    if classes is None:
        return
    n = choices.DATASET_CLASSES.get(dataset, 10)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= k < n for k in classes):
        raise ConfigError(f"{key} must list at least 2 different class numbers in [0, {n - 1}], got {classes}")


@dataclass
class ModelConfig:
    name: str = setting("mlp", "the architecture: mlp (dense layers) or cnn (conv blocks, then dense layers)", OneOf(choices.MODELS))
    hidden_layers: int = setting(2, "dense hidden layers, each of model.units units (a list of units sets the depth itself)",
                                 Interval(0, 1000))
    units: Any = setting(100, "units of every hidden layer, or a list of ints, one per layer",
                         Satisfies("a positive integer or a list of them",
                                   lambda u: all(is_count(x) for x in (u if isinstance(u, list) else [u]))))
    filters: list[int] = setting([32, 64], "cnn: filters of each conv block, one block per entry",
                                 Satisfies("a non-empty list of positive integers", lambda f: bool(f) and all(x >= 1 for x in f)))
    kernel_size: int = setting(3, "cnn: the conv kernels' height and width", COUNT)

    def __post_init__(self) -> None:
        """A list of units sets the depth: hidden_layers then says the same, so the config says what is built."""
        if isinstance(self.units, list):
            self.hidden_layers = len(self.units)


def hidden_units(model: ModelConfig) -> list[int]:
    """Units per hidden layer: a list sets sizes and depth; an int repeats hidden_layers times."""
    if isinstance(model.units, list):
        return list(model.units)
    return [model.units] * model.hidden_layers


# In the activation, initializer and optimizer groups every key a YAML sets, other than `name` (and
# the optimizer's `lr`), is an argument of the Keras object: the keys below are typed and checked
# here (None: not set, Keras' default); any other key goes into `args` as it is (keras_args.py).
@dataclass
class ActivationConfig:
    name: str = setting("relu", "the hidden layers' activation: a Keras activation, or prelu",
                        KerasName(choices.ACTIVATIONS, choices.KERAS_ACTIVATIONS, "keras.activations.get"))
    alpha: float | None = setting(None, "leaky_relu's negative slope; elu's and celu's alpha")
    args: dict[str, Any] = setting({}, "the YAML's other keys: the activation's own arguments")

    def check(self) -> None:
        if self.name == "leaky_relu" and self.alpha is not None:  # a slope; elu's and celu's alpha is any scale
            UNIT.check("activation.alpha", self.alpha)


@dataclass
class InitializerConfig:
    name: str = setting("auto", "the kernels' initializer; auto: He for the ReLU family, LeCun for SELU, Glorot otherwise",
                        KerasName(choices.INITIALIZERS, choices.KERAS_INITIALIZERS, "keras.initializers.get"))
    scale: float | None = setting(None, "variance_scaling: variance = scale / fan", POSITIVE)
    mode: str | None = setting(None, "variance_scaling: the fan, fan_in, fan_out or fan_avg", OneOf(choices.VARIANCE_SCALING_MODES))
    distribution: str | None = setting(None, "variance_scaling: truncated_normal, untruncated_normal or uniform",
                                       OneOf(choices.VARIANCE_SCALING_DISTRIBUTIONS))
    args: dict[str, Any] = setting({}, "the YAML's other keys: the initializer's own arguments")


@dataclass
class NormalizationConfig:
    name: str = setting("none", "batch normalization before or after each hidden activation, or none",
                        OneOf(choices.NORMALIZATIONS))
    momentum: float = setting(0.99, "Keras' momentum; the lecture's EMA weight is alpha = 1 - momentum", UNIT)
    epsilon: float = setting(1e-3, "added to the variance before its square root", POSITIVE)
    input: bool = setting(False, "also batch-normalize the input (right after Flatten; for a CNN, the image)")


@dataclass
class OptimizerConfig:
    name: str = setting("sgd", "a Keras optimizer", KerasName(choices.OPTIMIZERS, choices.KERAS_OPTIMIZERS, "keras.optimizers.get"))
    lr: float = setting(0.01, "the learning rate (Keras' learning_rate), or the schedule's starting rate", POSITIVE)
    momentum: float | None = setting(None, "sgd's momentum (beta)", FRACTION)
    nesterov: bool | None = setting(None, "sgd: Nesterov accelerated gradient")
    beta_1: float | None = setting(None, "decay of the first-moment (momentum) average", FRACTION)
    beta_2: float | None = setting(None, "decay of the second-moment (squared gradient) average", FRACTION)
    rho: float | None = setting(None, "rmsprop's and adadelta's decay of the squared-gradient average", FRACTION)
    weight_decay: float | None = setting(None, "decoupled weight decay (adamw, lion, ...)", NON_NEGATIVE)
    args: dict[str, Any] = setting({}, "the YAML's other keys: the optimizer's own arguments")


@dataclass
class SchedulerConfig:
    name: str = setting("constant", "the learning-rate schedule", OneOf(choices.SCHEDULERS))
    unit: str = setting("step", "what t and every length below count: optimizer steps, or finished epochs",
                        OneOf(choices.SCHEDULE_UNITS))
    s: float = setting(1000.0, "power, exponential: the step size, in steps or epochs", POSITIVE)
    c: float = setting(1.0, "power: the power", Interval(0, math.inf, "neither"))
    factor: float = setting(0.5, "performance: lr <- lr * factor", OPEN_UNIT)
    patience: int = setting(2, "performance: epochs without val_loss improvement before a cut", NON_NEGATIVE)
    min_lr: float = setting(0.0, "performance: the rate is never cut below this", NON_NEGATIVE)
    boundaries: list[int] = setting([], "piecewise: steps (or epochs) where the rate changes")
    values: list[float] = setting([], "piecewise: the rates, one more than boundaries", Each(POSITIVE))
    total_steps: int | None = setting(None, "one_cycle, cosine: the schedule's length; null: the whole run", COUNT)
    start_factor: float = setting(0.1, "one_cycle: starting rate = optimizer.lr * start_factor", Interval(0, 1, "right"))
    end_factor: float = setting(0.001, "one_cycle: final rate = optimizer.lr * end_factor", UNIT)
    final_fraction: float = setting(0.1, "one_cycle: share of the steps spent in the final decay", FRACTION)
    warmup_steps: int = setting(0, "cosine: linear warm-up from 0 to optimizer.lr over these steps", NON_NEGATIVE)
    alpha: float = setting(0.0, "cosine: the rate ends at optimizer.lr * alpha", UNIT)

    def check(self) -> None:
        if self.name != "piecewise":
            return
        if len(self.values) != len(self.boundaries) + 1:
            raise ConfigError(
                f"scheduler.values must have one more entry than scheduler.boundaries, got {len(self.values)} values "
                f"for {len(self.boundaries)} boundaries"
            )
        if self.boundaries != sorted(set(self.boundaries)) or any(b < 1 for b in self.boundaries):
            raise ConfigError(f"scheduler.boundaries must be increasing positive {self.unit} counts, got {self.boundaries}")


@dataclass
class ClippingConfig:
    name: str = setting("none", "gradient clipping by value, norm or global norm, or none", OneOf(choices.CLIPPINGS))
    threshold: float = setting(1.0, "the clipping threshold", POSITIVE)


@dataclass
class RegularizationConfig:
    rate: float = setting(0.0, "dropout rate; 0 means no dropout layers", FRACTION)
    layers: str = setting("all", "where dropout goes: all (input and hidden), hidden, input, or the last last_k hidden layers",
                          OneOf(choices.DROPOUT_LAYERS))
    last_k: int = setting(2, "layers=last: how many of the last hidden layers get dropout", COUNT)
    early_stopping: bool = setting(False, "stop when monitor has not improved for patience epochs")
    monitor: str = setting("val_loss", "early stopping's metric", OneOf(choices.MONITORS))
    patience: int = setting(5, "early stopping: epochs without improvement", NON_NEGATIVE)
    restore_best_weights: bool = setting(True, "early stopping: roll back to the best epoch's weights")
    dropout_kind: str = setting("dropout", "dropout, or alpha_dropout (keeps SELU's mean and variance)", OneOf(choices.DROPOUT_KINDS))
    penalty: str = setting("none", "kernel penalty added to the loss: none, l1, l2, l1_l2", OneOf(choices.PENALTIES))
    l1: float = setting(0.01, "the l1 penalty's factor", NON_NEGATIVE)
    l2: float = setting(0.01, "the l2 penalty's factor", NON_NEGATIVE)
    penalize_output: bool = setting(False, "the penalty on the output layer's kernel too")
    max_norm: float | None = setting(None, "max-norm constraint on each unit's incoming weights; null: none", POSITIVE)


@dataclass
class EvaluationConfig:
    mc_samples: int = setting(0, "MC Dropout: predictions averaged over this many passes with dropout on (0 = off)",
                              NON_NEGATIVE)


@dataclass
class DiagnosticsConfig:
    enabled: bool = setting(False, "measure the gradient flow per layer while training")
    batch_size: int = setting(256, "the fixed training batch every measurement uses", COUNT)
    vanishing_below: float = setting(0.1, "grad_ratio below this: vanishing", OPEN_UNIT)
    exploding_above: float = setting(10.0, "grad_ratio above this: exploding", Interval(1, math.inf, "neither"))


@dataclass
class LrFindConfig:
    min_lr: float = setting(1e-5, "the finder's first rate", POSITIVE)
    max_lr: float = setting(10.0, "the finder's last rate; more than lr_find.min_lr")
    stop_factor: float = setting(4.0, "stop once the smoothed loss exceeds this many times its minimum",
                                 Interval(1, math.inf, "right"))

    def check(self) -> None:
        Interval(self.min_lr, math.inf, "neither").check("lr_find.max_lr", self.max_lr)


@dataclass
class TrainerConfig:
    epochs: int = setting(10, "training epochs", COUNT)
    batch_size: int = setting(32, "samples per optimizer step", COUNT)
    seed: int = setting(42, "seeds the weights, the shuffling and dropout", SEED)
    shuffle: str = setting("epoch", "the samples' order: a new seeded one every epoch (fit(shuffle=True) as Keras documents it), "
                           "one seeded order for all epochs (once: seeded fit on TensorFlow), or the split's own (none)",
                           OneOf(choices.SHUFFLES))
    verbose: bool = setting(True, "a progress bar and the run's summary")
    backend: str = setting("tensorflow", "Keras' backend: tensorflow or jax (pip install 'dnnexp[jax]')", OneOf(choices.BACKENDS))
    # How fast, and where: docs/performance.md.
    steps_per_execution: Any = setting("auto", "training steps per call into the backend", AUTO_OR_COUNT)
    threads: Any = setting("auto", "threads of this process's training step (TensorFlow's pools, XLA's on JAX)", AUTO_OR_COUNT)
    jit_compile: Any = setting("auto", "XLA: auto is off on TensorFlow (slower for small MLPs on CPU), always on on JAX",
                               Satisfies("auto, true or false", lambda v: v in ("auto", True, False)))
    strategy: str = setting("default", "tf.distribute: default, mirrored (local GPUs), multi_worker (TF_CONFIG)",
                            OneOf(choices.STRATEGIES))
    mixed_precision: bool = setting(False, "float16 compute, float32 variables and output (GPUs)")
    keep: str = setting("best", "the weights a run keeps (model.keras, val_*, test_*): its best epoch by monitor, or its last",
                        OneOf(choices.KEEPS))
    monitor: str | None = setting(None, "the metric keep=best picks the epoch by; null: regularization.monitor",
                                  OneOf(choices.MONITORS))

    def check(self) -> None:
        """The backend is installed, and the trainer's other settings have a meaning on it."""
        if self.backend == "jax":
            if importlib.util.find_spec("jax") is None:
                raise ConfigError("trainer.backend=jax needs JAX: pip install 'dnnexp[jax]'")
            if self.jit_compile is False:
                raise ConfigError("trainer.jit_compile=false is not available with trainer.backend=jax: JAX runs every step "
                                  "through XLA (use auto or true)")
            if self.strategy != "default":
                raise ConfigError(f"trainer.strategy={self.strategy} needs trainer.backend=tensorflow (it is a tf.distribute "
                                  "strategy); with trainer.backend=jax use trainer.strategy=default")
        if self.strategy == "multi_worker":
            check_tf_config(os.environ.get("TF_CONFIG"))


def check_tf_config(text: str | None) -> None:
    """multi_worker reads the cluster from TF_CONFIG; without it TensorFlow trains as one local worker."""
    if text is None:
        return
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
        raise ConfigError(f"TF_CONFIG must be JSON with 'cluster' and 'task' for trainer.strategy=multi_worker, got {text!r}")


@dataclass
class MlflowLoggerConfig:
    tracking_uri: str = setting("sqlite:///outputs/mlflow.db", "a local SQLite store, or an MLflow server's URL")
    log_model: bool = setting(False, "also model.keras, as an artifact")


@dataclass
class WandbLoggerConfig:
    mode: str = setting("offline", "offline (outputs/wandb, sync later), online, disabled", OneOf(choices.WANDB_MODES))
    project: str | None = setting(None, "the W&B project; null: task_name")
    entity: str | None = setting(None, "the W&B entity (user or team)")
    dir: str = setting("outputs", "offline runs go into <dir>/wandb/")
    log_model: bool = setting(False, "also model.keras, as an artifact")


@dataclass
class TensorBoardLoggerConfig:
    histogram_freq: int = setting(0, "epochs between weight histograms (0: none)", NON_NEGATIVE)


@dataclass
class LoggerConfig:
    """The experiment trackers of conf/logger/, each present when chosen (logger=[mlflow,tensorboard])."""

    mlflow: MlflowLoggerConfig | None = setting(None, "MLflow tracking")
    wandb: WandbLoggerConfig | None = setting(None, "Weights & Biases tracking")
    tensorboard: TensorBoardLoggerConfig | None = setting(None, "TensorBoard event files")

    def check(self) -> None:
        """Each chosen tracker's package must be installed (the extra of the same name installs it)."""
        for name in ("mlflow", "wandb", "tensorboard"):
            if getattr(self, name) is not None and importlib.util.find_spec(name) is None:
                raise ConfigError(f"logger={name} needs the {name} package: pip install 'dnnexp[{name}]'")


@dataclass
class TransferConfig:
    """Reuse a pretrained network (lecture: "Transfer Learning"); see conf/transfer/."""

    name: str = setting("none", "train from scratch (none), or reuse a network: frozen, finetune, mobilenet_v2",
                        OneOf(choices.TRANSFERS))
    source: str | None = setting(None, "a .keras file or a dnnexp run folder; null: pretrain task A (below), cached")
    pretrain_classes: list[int] | None = setting(None, "task A: these classes of the same dataset and split")
    pretrain_epochs: int = setting(10, "task A's training epochs", COUNT)
    pretrain_seed: int = setting(0, "task A's seed", SEED)
    cache_dir: str = setting("outputs/pretrained", "pretrained task-A runs, one folder per config hash")
    reuse_layers: int | None = setting(None, "the lower hidden blocks to reuse; null: all of them", COUNT)
    new_units: list[int] = setting([], "new hidden layers on top of the reused ones", Each(COUNT))
    frozen_epochs: int | None = setting(None, "epochs with the reused layers frozen; null: trainer.epochs - finetune_epochs",
                                        COUNT)
    finetune_epochs: int = setting(0, "epochs with the top unfreeze_top reused blocks trainable again", NON_NEGATIVE)
    unfreeze_top: int = setting(1, "reused blocks (or base layers) made trainable again for the fine-tuning phase", COUNT)
    lr_factor: float = setting(0.1, "fine-tuning learning rate = optimizer.lr * lr_factor", Interval(0, 1, "right"))
    resize: bool = setting(False, "resize and channel-map inputs to the source's input shape")
    weights: str | None = setting("imagenet", "mobilenet_v2: pretrained weights (imagenet or a file), or null for random ones")
    input_size: int = setting(96, "mobilenet_v2: images are resized to input_size x input_size x 3", Interval(32))
    alpha: float = setting(0.35, "mobilenet_v2: width multiplier", POSITIVE)

    def check(self) -> None:
        if self.name == "mobilenet_v2":
            self.check_weights()

    def check_weights(self) -> None:
        if self.weights is None:
            return
        if self.weights != "imagenet":
            if not Path(self.weights).is_file():
                raise ConfigError(f"transfer.weights must be imagenet, null or a weights file, got {self.weights!r} (no such file)")
            return
        imagenet = (("input_size", self.input_size, choices.IMAGENET_SIZES), ("alpha", self.alpha, choices.IMAGENET_ALPHAS))
        for key, value, allowed in imagenet:
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed)
                raise ConfigError(f"transfer.{key} must be one of {shown} with transfer.weights=imagenet, got {value}")

    def check_source(self, dataset: str) -> None:
        """A pretrained source exists, or task A is defined."""
        if self.source is None:
            if self.pretrain_classes is None:
                raise ConfigError(
                    f"transfer={self.name} needs transfer.source (a .keras file or a dnnexp run folder) "
                    "or transfer.pretrain_classes (task A, pretrained first)"
                )
            check_classes("transfer.pretrain_classes", self.pretrain_classes, dataset)
            return
        path = Path(self.source)
        if not path.exists():
            raise ConfigError(f"transfer.source={self.source} does not exist (expected a .keras file or a dnnexp run folder)")
        if path.is_dir() and not (path / MODEL).is_file():
            raise ConfigError(f"transfer.source={self.source} is a folder without {MODEL} (not a finished dnnexp run)")

    def check_phases(self, epochs: int) -> None:
        """Phase 1 trains with every reused layer frozen; phase 2 unfreezes the top ones at a lower rate."""
        frozen, _ = phase_epochs(self, epochs)
        if frozen < 1:
            raise ConfigError(
                f"transfer.finetune_epochs={self.finetune_epochs} must be less than trainer.epochs={epochs} "
                "(transfer.frozen_epochs=null trains the rest of trainer.epochs frozen)"
            )


def phase_epochs(t: TransferConfig, epochs: int) -> tuple[int, int]:
    """(frozen, fine-tuning) epochs. transfer=frozen never fine-tunes, so one sweep over
    transfer=none,frozen,finetune accepts the same overrides in every job; frozen_epochs=null
    leaves trainer.epochs in total."""
    finetune = 0 if t.name == "frozen" else t.finetune_epochs
    frozen = epochs - finetune if t.frozen_epochs is None else t.frozen_epochs
    return frozen, finetune


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
    mode: str = setting("train", "train, lr_find (loss against a growing rate) or plot_schedule (no training)", OneOf(choices.MODES))
    optimized_metric: str = setting("val_accuracy", "the metric a run returns to sweepers and a sweep's table ranks by",
                                    OneOf(choices.OPTIMIZED_METRICS))
    task_name: str = setting("train", "names the output folder: outputs/<task_name>/...")
    claims: list[str] = setting([], "what the sweep is expected to show, checked by its report (results/claims.py)")
    claims_margin: float | None = setting(None, "the practical margin of claims without their own 'within D'; "
                                          "null: 0.005 for accuracies, 0.01 for losses", Interval(0, math.inf, "left"))

    def check(self) -> None:
        """The rules that span groups."""
        self.check_keep()
        self.check_transfer()
        self.check_tools()
        self.check_depth()

    def check_keep(self) -> None:
        """trainer.keep=best and early stopping's restore_best_weights must not pick two different epochs."""
        t, r = self.trainer, self.regularization
        if t.keep == "best" and r.early_stopping and r.restore_best_weights and keep_monitor(self) != r.monitor:
            raise ConfigError(
                f"trainer.monitor={t.monitor} and regularization.monitor={r.monitor} would keep two different best epochs "
                "(trainer.keep=best and early stopping's restore_best_weights); set them to the same metric, "
                "or regularization.restore_best_weights=false"
            )

    def check_transfer(self) -> None:
        t = self.transfer
        if t.name == "none":
            return
        if self.dataset.raw_pixels and (t.name == "mobilenet_v2" or t.source is not None):
            raise ConfigError(f"dataset.raw_pixels=true cannot change the input of a pretrained network (transfer={t.name}"
                              f"{'' if t.source is None else ' with transfer.source'}): its first layers keep the scaling it was trained with")
        if t.name != "mobilenet_v2":
            t.check_source(self.dataset.name)
        t.check_phases(self.trainer.epochs)
        if t.name == "mobilenet_v2" and self.diagnostics.enabled and not t.new_units:
            raise ConfigError("diagnostics=on measures dnnexp's hidden blocks; with transfer=mobilenet_v2 add some with transfer.new_units")

    def check_tools(self) -> None:
        """MC Dropout, diagnostics and the run mode."""
        if self.mode == "plot_schedule" and self.scheduler.name == "performance":
            raise ConfigError("scheduler=performance cannot be plotted before training: its cuts depend on the validation loss")
        if self.evaluation.mc_samples > 0 and self.regularization.rate == 0:
            raise ConfigError(
                f"evaluation.mc_samples={self.evaluation.mc_samples} needs dropout: set regularization=dropout "
                "(regularization.rate > 0)"
            )
        m = self.model
        if self.diagnostics.enabled and self.transfer.name == "none" and m.name == "mlp" and not hidden_units(m):
            key = "model.units=[]" if isinstance(m.units, list) else f"model.hidden_layers={m.hidden_layers}"
            raise ConfigError(f"diagnostics=on measures the hidden layers, and {key} builds none; add hidden layers or set diagnostics=off")

    def check_depth(self) -> None:
        """model.units=[] built no hidden layer while the saved config said hidden_layers: 2; hidden_layers=0 says it.
        After check_tools, so that diagnostics=on with no hidden layer is named as such."""
        if self.model.units == []:
            raise ConfigError("model.units must list the units of at least one layer, got []; "
                              "for no hidden layer set model.hidden_layers=0")


def keep_monitor(c: Config) -> str:
    """The metric trainer.keep=best picks the epoch by: trainer.monitor, else early stopping's regularization.monitor."""
    return c.trainer.monitor or c.regularization.monitor

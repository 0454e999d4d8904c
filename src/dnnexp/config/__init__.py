"""The config: its schema (schema.py, each field's default, meaning and constraints declared with it), the
lists of choices (choices.py), validation (validation.py), the Keras groups' arguments (keras_args.py) and
hashing (hashing.py). The flattener they share with loggers.py and results/ is dnnexp.flat_config.
Importing it registers the schema's defaults of the regularization group with Hydra's ConfigStore.
No TensorFlow here.
"""

from hydra.core.config_store import ConfigStore

from dnnexp.config.choices import (
    ACTIVATIONS, BACKENDS, CLIPPINGS, DATASET_CLASSES, DATASETS, DROPOUT_KINDS, DROPOUT_LAYERS, IMAGENET_ALPHAS,
    IMAGENET_SIZES, INITIALIZERS, KEEPS, SHUFFLES, KERAS_ACTIVATIONS, KERAS_INITIALIZERS, KERAS_OPTIMIZERS, MODELS, MODES,
    MONITORS, NORMALIZATIONS, OPTIMIZED_METRICS, OPTIMIZERS, PENALTIES, SCHEDULE_UNITS, SCHEDULERS, SPLITS, STRATEGIES,
    TRANSFERS, VARIANCE_SCALING_DISTRIBUTIONS, VARIANCE_SCALING_MODES, WANDB_MODES, registry,
)
from dnnexp.config.constraints import ConfigError
from dnnexp.config.hashing import UNHASHED_KEYS, config_hash, first_difference, hashed_config
from dnnexp.config.keras_args import keras_arguments
from dnnexp.config.schema import (
    ActivationConfig, ClippingConfig, Config, DatasetConfig, DiagnosticsConfig, EvaluationConfig, InitializerConfig,
    LoggerConfig, LrFindConfig, MlflowLoggerConfig, ModelConfig, NormalizationConfig, OptimizerConfig,
    RegularizationConfig, SchedulerConfig, TensorBoardLoggerConfig, TrainerConfig, TransferConfig, WandbLoggerConfig,
    hidden_units, keep_monitor, phase_epochs,
)
from dnnexp.config.validation import KERAS_GROUPS, validate, validate_sweep

# regularization=none is the schema's defaults (no dropout, no early stopping, no penalty); every other
# conf/regularization/ YAML starts from it (`defaults: [none]`) and sets only what differs.
ConfigStore.instance().store(group="regularization", name="none", node=RegularizationConfig)

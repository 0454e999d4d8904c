"""The config: its schema (schema.py, each field's constraints next to it), the choices (choices.py),
validation (validation.py), the Keras groups' arguments (keras_args.py) and hashing (hashing.py). Importing it registers the schema's group bases with Hydra's ConfigStore.
No TensorFlow here.
"""

from dnnexp.config.choices import *  # noqa: F403 (every list of choices, as before the split)
from dnnexp.config.constraints import ConfigError
from dnnexp.config.hashing import UNHASHED_KEYS, config_hash, first_difference, hashed_config
from dnnexp.config.keras_args import keras_arguments
from dnnexp.config.schema import (
    ActivationConfig, ClippingConfig, Config, DatasetConfig, DiagnosticsConfig, EvaluationConfig, InitializerConfig,
    LoggerConfig, LrFindConfig, MlflowLoggerConfig, ModelConfig, NormalizationConfig, OptimizerConfig,
    RegularizationConfig, SchedulerConfig, TensorBoardLoggerConfig, TrainerConfig, TransferConfig, WandbLoggerConfig,
    hidden_units, keep_monitor, phase_epochs,
)
from dnnexp.config.validation import KERAS_GROUPS, validate

from hydra.core.config_store import ConfigStore  # noqa: E402

# regularization=none is the schema's defaults (no dropout, no early stopping, no penalty); every other
# conf/regularization/ YAML starts from it (`defaults: [none]`) and sets only what differs.
ConfigStore.instance().store(group="regularization", name="none", node=RegularizationConfig)

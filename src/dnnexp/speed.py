"""How a run uses the machine: steps per call and precision, on either backend.

None of this changes what is computed (mixed precision aside, which rounds to float16),
only how fast. Threads, distribution and determinism differ by backend: see
``dnnexp.engines``.
"""

from __future__ import annotations

import math

from dnnexp.keras_import import keras
from dnnexp.config import TrainerConfig

# steps_per_execution=auto: enough steps per call that the fixed cost of a call into
# the backend disappears: about 2,560 samples per call, at most 50 steps (benchmarks/README.md
# says how the figures were measured; docs/performance.md, "Settings").
AUTO_SAMPLES_PER_CALL = 2560
AUTO_MAX_STEPS = 50


def steps_per_execution(trainer: TrainerConfig, n_train: int) -> int:
    """Training steps per call into the backend: the wanted number, at most an epoch's steps.

    Several steps per call keep the per-step learning-rate schedules exact (they read
    the optimizer's step count), and each epoch is its own pass over the data, so an
    epoch's last call runs only the steps left and history, early stopping and the
    progress bar stay per epoch.
    """
    steps_per_epoch = math.ceil(n_train / trainer.batch_size)
    wanted = trainer.steps_per_execution
    if wanted == "auto":
        wanted = max(1, min(AUTO_MAX_STEPS, round(AUTO_SAMPLES_PER_CALL / trainer.batch_size)))
    return min(wanted, steps_per_epoch)


def set_precision(mixed: bool) -> None:
    """Mixed precision computes in float16 and keeps variables in float32 (the output layer stays float32).

    The policy is global to the process, so every run sets it, on or off.
    """
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")

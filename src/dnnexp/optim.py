"""Optimizer, learning-rate schedule and gradient clipping, from the config.

Per-step schedules are Keras ``LearningRateSchedule`` objects evaluated at the
optimizer's step count t, so they stay exact however many steps run per call.
Performance scheduling depends on the validation loss, so it is a callback.
"""

from __future__ import annotations

import dataclasses
import math

from dnnexp.keras_import import keras

from dnnexp.config import CLIPPINGS, SCHEDULERS, ClippingConfig, Config, ConfigError, SchedulerConfig, keras_arguments, registry


@keras.saving.register_keras_serializable(package="dnnexp")
class PowerDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Power scheduling, eq. (1): lr(t) = lr0 / (1 + t/s)^c.

    Keras' InverseTimeDecay is only the c = 1 case, so the general power is written here.
    """

    def __init__(self, initial_learning_rate: float, s: float, c: float = 1.0):
        self.initial_learning_rate = initial_learning_rate
        self.s = s
        self.c = c

    def __call__(self, step):
        t = keras.ops.cast(step, "float32")
        return self.initial_learning_rate / keras.ops.power(1.0 + t / self.s, self.c)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "s": self.s, "c": self.c}


@keras.saving.register_keras_serializable(package="dnnexp")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """1cycle (Smith, 2018; HML ch. 11) over T = total_steps optimizer steps, cycle C = (1 - final_fraction) T:

    lr(t) = lo + (peak - lo) * t / (C/2)            for t <= C/2
          = peak - (peak - lo) * (t - C/2) / (C/2)  for C/2 < t <= C
          = lo - (lo - end) * (t - C) / (T - C)     for C < t <= T, and end after T,

    with lo = peak * start_factor and end = peak * end_factor. Keras has no 1cycle schedule
    (PiecewiseConstantDecay is constant between boundaries, CosineDecay's warm-up is followed
    by a cosine, not a line), so it is written here as linear interpolation through four points.
    """

    def __init__(self, peak: float, total_steps: int, start_factor: float, end_factor: float, final_fraction: float):
        self.peak = peak
        self.total_steps = total_steps
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.final_fraction = final_fraction

    def __call__(self, step):
        t = keras.ops.cast(step, "float32")
        cycle = (1.0 - self.final_fraction) * self.total_steps
        lo, end = self.peak * self.start_factor, self.peak * self.end_factor
        # Each piece is a line clipped to its own interval; their sum is the piecewise-linear curve.
        up = keras.ops.clip(t / (cycle / 2), 0.0, 1.0) * (self.peak - lo)
        down = keras.ops.clip((t - cycle / 2) / (cycle / 2), 0.0, 1.0) * (self.peak - lo)
        final = keras.ops.clip((t - cycle) / max(self.total_steps - cycle, 1e-9), 0.0, 1.0) * (lo - end)
        return lo + up - down - final

    def get_config(self) -> dict:
        return {
            "peak": self.peak, "total_steps": self.total_steps, "start_factor": self.start_factor,
            "end_factor": self.end_factor, "final_fraction": self.final_fraction,
        }


@keras.saving.register_keras_serializable(package="dnnexp")
class PerEpoch(keras.optimizers.schedules.LearningRateSchedule):
    """scheduler.unit=epoch: the schedule evaluated at t = finished epochs = floor(step / steps_per_epoch),
    so the rate changes only between epochs, as with Keras' LearningRateScheduler (HML's per-epoch
    exponential and piecewise schedules). The optimizer still asks for its rate at every step, so
    this holds whatever steps_per_execution is.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, steps_per_epoch: int):
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        return self.schedule(keras.ops.floor_divide(step, self.steps_per_epoch))

    def get_config(self) -> dict:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "steps_per_epoch": self.steps_per_epoch}

    @classmethod
    def from_config(cls, config: dict) -> PerEpoch:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["steps_per_epoch"])


def _exponential(lr0: float, cfg: SchedulerConfig, total_steps: int | None):
    # eq. (3): lr0 * 0.1^(t/s) is ExponentialDecay with decay_rate 0.1 and decay_steps s, not staircased.
    return keras.optimizers.schedules.ExponentialDecay(lr0, decay_steps=cfg.s, decay_rate=0.1)


def _piecewise(lr0: float, cfg: SchedulerConfig, total_steps: int | None):
    # Keras' PiecewiseConstantDecay is exactly "values[i] for boundaries[i-1] < t <= boundaries[i]".
    return keras.optimizers.schedules.PiecewiseConstantDecay(list(cfg.boundaries), list(cfg.values))


def _one_cycle(lr0: float, cfg: SchedulerConfig, total_steps: int | None):
    return OneCycle(lr0, _steps(cfg, total_steps), cfg.start_factor, cfg.end_factor, cfg.final_fraction)


def _cosine(lr0: float, cfg: SchedulerConfig, total_steps: int | None):
    decay_steps = max(_steps(cfg, total_steps) - cfg.warmup_steps, 1)
    if cfg.warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(lr0, decay_steps, alpha=cfg.alpha)
    # With warmup_target, Keras rises linearly from initial_learning_rate (0) to lr0, then decays from lr0.
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, alpha=cfg.alpha, warmup_target=lr0, warmup_steps=cfg.warmup_steps
    )


def _steps(cfg: SchedulerConfig, total_steps: int | None) -> int:
    steps = cfg.total_steps or total_steps
    if steps is None:
        raise ConfigError(f"scheduler={cfg.name} needs scheduler.total_steps (the run's length is not known here)")
    return steps


SCHEDULES = registry(SCHEDULERS, {
    "constant": lambda lr0, cfg, total: lr0,
    "power": lambda lr0, cfg, total: PowerDecay(lr0, cfg.s, cfg.c),
    "exponential": _exponential,
    "performance": lambda lr0, cfg, total: lr0,  # a plain rate that ReduceLROnPlateau cuts
    "piecewise": _piecewise,
    "one_cycle": _one_cycle,
    "cosine": _cosine,
})

# Keras' own clipping arguments: per component, per gradient tensor, or over all tensors jointly.
CLIPPING = registry(CLIPPINGS, {"none": None, "value": "clipvalue", "norm": "clipnorm", "global_norm": "global_clipnorm"})


def steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Batches per epoch (the last one may be partial)."""
    return math.ceil(n_train / cfg.trainer.batch_size)


def planned_steps(cfg: Config, n_train: int, epochs: int | None = None) -> int:
    """Optimizer steps in the whole run (or in ``epochs`` of it, one transfer-learning phase):
    epochs x batches per epoch."""
    return (cfg.trainer.epochs if epochs is None else epochs) * steps_per_epoch(cfg, n_train)


def build_schedule(lr0: float, cfg: SchedulerConfig, total_steps: int | None = None, per_epoch: int | None = None):
    """A float for constant rates, else a LearningRateSchedule of the optimizer step t.

    ``total_steps`` is the run's length, which one_cycle and cosine stretch over unless
    scheduler.total_steps sets it. With scheduler.unit=epoch every length counts epochs
    (``per_epoch`` steps each) and t is the number of finished epochs.
    """
    if cfg.unit == "step":
        return SCHEDULES[cfg.name](lr0, cfg, total_steps)
    if per_epoch is None:
        raise ConfigError("scheduler.unit=epoch needs the steps per epoch (the run's data is not known here)")
    schedule = SCHEDULES[cfg.name](lr0, cfg, None if total_steps is None else math.ceil(total_steps / per_epoch))
    return PerEpoch(schedule, per_epoch) if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) else schedule


def clipping_kwargs(cfg: ClippingConfig) -> dict:
    arg = CLIPPING[cfg.name]
    return {arg: cfg.threshold} if arg else {}


def build_optimizer(cfg: Config, total_steps: int | None = None, lr_factor: float = 1.0,
                    per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """The configured optimizer; ``lr_factor`` scales its learning rate (transfer learning's fine-tuning phase).

    Piecewise scheduling's ``scheduler.values`` are rates themselves, not multiples of
    optimizer.lr, so the factor scales them too.
    """
    scheduler = dataclasses.replace(cfg.scheduler, values=[v * lr_factor for v in cfg.scheduler.values])
    schedule = build_schedule(cfg.optimizer.lr * lr_factor, scheduler, total_steps, per_epoch)
    # get() resolves the name (and its aliases) to an instance with Keras' defaults; its class takes the arguments.
    optimizer = type(keras.optimizers.get(cfg.optimizer.name))
    return optimizer(learning_rate=schedule, **keras_arguments(cfg.optimizer), **clipping_kwargs(cfg.clipping))


def schedule_callbacks(cfg: Config) -> list[keras.callbacks.Callback]:
    """Performance scheduling: cut the rate by `factor` after `patience` epochs without val_loss improving."""
    s = cfg.scheduler
    if s.name != "performance":
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=s.factor, patience=s.patience, min_lr=s.min_lr, verbose=0)]

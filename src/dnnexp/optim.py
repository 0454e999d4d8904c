"""Optimizer, learning-rate schedule and gradient clipping, from the config.

Per-step schedules are Keras ``LearningRateSchedule`` objects evaluated at the
optimizer's step count t, so they stay exact however many steps run per call.
Performance scheduling depends on the validation loss, so it is a callback.
"""

from __future__ import annotations

from dnnexp.backend import keras

from dnnexp.config import ClippingConfig, Config, OptimizerConfig, SchedulerConfig


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


def _exponential(lr0: float, cfg: SchedulerConfig):
    # eq. (3): lr0 * 0.1^(t/s) is ExponentialDecay with decay_rate 0.1 and decay_steps s, not staircased.
    return keras.optimizers.schedules.ExponentialDecay(lr0, decay_steps=cfg.s, decay_rate=0.1)


SCHEDULES = {
    "constant": lambda lr0, cfg: lr0,
    "power": lambda lr0, cfg: PowerDecay(lr0, cfg.s, cfg.c),
    "exponential": _exponential,
    "performance": lambda lr0, cfg: lr0,  # a plain rate that ReduceLROnPlateau cuts
}

OPTIMIZERS = {
    "sgd": lambda c, lr, clip: keras.optimizers.SGD(lr, momentum=c.momentum, nesterov=c.nesterov, **clip),
    "adam": lambda c, lr, clip: keras.optimizers.Adam(lr, beta_1=c.beta_1, beta_2=c.beta_2, **clip),
    "nadam": lambda c, lr, clip: keras.optimizers.Nadam(lr, beta_1=c.beta_1, beta_2=c.beta_2, **clip),
    "rmsprop": lambda c, lr, clip: keras.optimizers.RMSprop(lr, rho=c.rho, **clip),
}

# Keras' own clipping arguments: per component, per gradient tensor, or over all tensors jointly.
CLIPPING = {"none": None, "value": "clipvalue", "norm": "clipnorm", "global_norm": "global_clipnorm"}


def build_schedule(lr0: float, cfg: SchedulerConfig):
    """A float for constant rates, else a LearningRateSchedule of the optimizer step t."""
    return SCHEDULES[cfg.name](lr0, cfg)


def clipping_kwargs(cfg: ClippingConfig) -> dict:
    arg = CLIPPING[cfg.name]
    return {arg: cfg.threshold} if arg else {}


def build_optimizer(cfg: Config, lr_factor: float = 1.0) -> keras.optimizers.Optimizer:
    """The configured optimizer; ``lr_factor`` scales its learning rate (transfer learning's fine-tuning phase)."""
    schedule = build_schedule(cfg.optimizer.lr * lr_factor, cfg.scheduler)
    return OPTIMIZERS[cfg.optimizer.name](cfg.optimizer, schedule, clipping_kwargs(cfg.clipping))


def schedule_callbacks(cfg: Config) -> list[keras.callbacks.Callback]:
    """Performance scheduling: cut the rate by `factor` after `patience` epochs without val_loss improving."""
    s = cfg.scheduler
    if s.name != "performance":
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=s.factor, patience=s.patience, min_lr=s.min_lr, verbose=0)]


def describe(opt: OptimizerConfig, sched: SchedulerConfig) -> str:
    return f"{opt.name} lr={opt.lr:g} ({sched.name})"

"""A config's Keras arguments, checked by Keras itself before anything trains.

dnnexp.config checks the names, and the arguments' names and types against a table of Keras'
signatures (config/keras_args.py), without TensorFlow; whether Keras accepts the values a user
adds to a Keras object (``+optimizer.epsilon=...``) only Keras can judge. Both modes that train
(train.py, lr_tools.py) call this first.
"""

from __future__ import annotations

from dnnexp.keras_import import keras
from dnnexp.config import Config, ConfigError, keras_arguments
from dnnexp.model import activation_layer, build_initializer
from dnnexp.optim import build_optimizer


def check_keras_arguments(cfg: Config) -> None:
    """Build the activation, initializer and optimizer once, so that arguments Keras refuses stop the
    run before data loads or anything is written. (dnnexp.config checked the names, without TensorFlow.)"""
    checks = {
        "activation": lambda: activation_layer(cfg.activation, "check")(keras.ops.ones((1, 4))),
        "initializer": lambda: keras.Variable(build_initializer(cfg), shape=(4, 4)),
        "optimizer": lambda: build_optimizer(cfg, total_steps=1, per_epoch=1),
    }
    for group, build in checks.items():
        try:
            build()
        except (TypeError, ValueError) as err:
            given = ", ".join(f"{k}={v}" for k, v in keras_arguments(getattr(cfg, group)).items()) or "no arguments"
            first = (str(err).splitlines() or [""])[0]
            raise ConfigError(f"{group}.name={getattr(cfg, group).name} with {given}: Keras refused it ({first})") from None

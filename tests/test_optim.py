"""Schedules match the lecture's formulas at every step; clipping reproduces the lecture's examples."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from dnnexp.backend import keras
from dnnexp.optim import build_optimizer, build_schedule, schedule_callbacks

STEPS = np.array([0, 1, 2, 10, 99, 100, 101, 1000, 12345], dtype=np.float64)


def rates(schedule, steps=STEPS) -> np.ndarray:
    return np.array([float(schedule(int(t))) for t in steps])


@pytest.mark.parametrize("s, c", [(100, 1.0), (20, 2.0), (50, 0.5)])
def test_power_schedule_matches_lecture_formula(s, c):
    cfg = tiny_config("scheduler=power", f"scheduler.s={s}", f"scheduler.c={c}")
    expected = 0.05 / (1 + STEPS / s) ** c  # eq. (1)
    np.testing.assert_allclose(rates(build_schedule(0.05, cfg.scheduler)), expected, rtol=1e-6)


def test_power_schedule_ratio_follows_eq_2():
    cfg = tiny_config("scheduler=power", "scheduler.s=10", "scheduler.c=2")
    lr = build_schedule(1.0, cfg.scheduler)
    for k in range(4):
        assert float(lr((k + 1) * 10)) / float(lr(k * 10)) == pytest.approx(((k + 1) / (k + 2)) ** 2, rel=1e-6)


@pytest.mark.parametrize("s", [10, 100, 777])
def test_exponential_schedule_matches_lecture_formula(s):
    cfg = tiny_config("scheduler=exponential", f"scheduler.s={s}")
    expected = 0.01 * 0.1 ** (STEPS / s)  # eq. (3)
    np.testing.assert_allclose(rates(build_schedule(0.01, cfg.scheduler)), expected, rtol=1e-5, atol=1e-37)  # float32 underflows past 1e-38


def test_constant_schedule_is_the_plain_rate():
    assert build_schedule(0.3, tiny_config().scheduler) == 0.3


def test_performance_scheduling_is_reduce_lr_on_plateau():
    cfg = tiny_config("scheduler=performance", "scheduler.factor=0.2", "scheduler.patience=3")
    (callback,) = schedule_callbacks(cfg)
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.monitor, callback.factor, callback.patience) == ("val_loss", 0.2, 3)


def clipped(clipping: str, gradient) -> np.ndarray:
    """Apply one SGD step with lr 1 to a zero variable: the update is minus the clipped gradient."""
    cfg = tiny_config(f"clipping={clipping}", "clipping.threshold=1", "optimizer.lr=1.0")
    variable = keras.Variable(np.zeros(len(gradient), dtype="float32"))
    build_optimizer(cfg).apply_gradients([(keras.ops.convert_to_tensor(np.array(gradient, dtype="float32")), variable)])
    return -keras.ops.convert_to_numpy(variable)


def test_clipping_by_value_changes_direction_as_in_lecture():
    np.testing.assert_allclose(clipped("value", [0.9, 100.0]), [0.9, 1.0], rtol=1e-6)


def test_clipping_by_norm_keeps_direction_as_in_lecture():
    np.testing.assert_allclose(clipped("norm", [0.9, 100.0]), [0.00899964, 0.9999595], rtol=1e-5)


def test_clipping_by_global_norm_on_one_tensor_equals_norm():
    np.testing.assert_allclose(clipped("global_norm", [0.9, 100.0]), [0.00899964, 0.9999595], rtol=1e-5)


def test_no_clipping_leaves_gradient():
    np.testing.assert_allclose(clipped("none", [0.9, 100.0]), [0.9, 100.0], rtol=1e-6)


@pytest.mark.parametrize(
    "overrides, cls, attrs",
    [
        (["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true"], "SGD", {"momentum": 0.9, "nesterov": True}),
        (["optimizer=adam", "optimizer.beta_1=0.8"], "Adam", {"beta_1": 0.8}),
        (["optimizer=nadam"], "Nadam", {"beta_2": 0.999}),
        (["optimizer=rmsprop", "optimizer.rho=0.8"], "RMSprop", {"rho": 0.8}),
    ],
)
def test_optimizer_choice_and_arguments(overrides, cls, attrs):
    opt = build_optimizer(tiny_config(*overrides, "optimizer.lr=0.02"))
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.02)
    for key, value in attrs.items():
        assert getattr(opt, key) == pytest.approx(value)

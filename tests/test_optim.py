"""Schedules match the lecture's formulas at every step; clipping reproduces the lecture's examples."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from dnnexp import config as schema
from dnnexp.keras_import import keras
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
        (["optimizer=adagrad"], "Adagrad", {}),
        (["optimizer=adamw", "optimizer.weight_decay=0.01"], "AdamW", {"weight_decay": 0.01, "beta_1": 0.9}),
        (["optimizer=adamax", "optimizer.beta_2=0.99"], "Adamax", {"beta_1": 0.9, "beta_2": 0.99}),
        (["optimizer=adadelta"], "Adadelta", {"rho": 0.95}),
        (["optimizer=adafactor", "+optimizer.relative_step=false"], "Adafactor", {"relative_step": False}),
        (["optimizer=ftrl", "+optimizer.l1_regularization_strength=0.01"], "Ftrl", {"l1_regularization_strength": 0.01}),
        (["optimizer=lion", "optimizer.weight_decay=0.1"], "Lion", {"beta_2": 0.99, "weight_decay": 0.1}),
    ],
)
def test_optimizer_choice_and_arguments(overrides, cls, attrs):
    opt = build_optimizer(tiny_config(*overrides, "optimizer.lr=0.02"))
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.02)
    for key, value in attrs.items():
        assert getattr(opt, key) == pytest.approx(value)


def test_piecewise_schedule_holds_each_value_up_to_its_boundary():
    cfg = tiny_config("scheduler=piecewise", "scheduler.boundaries=[10,100]", "scheduler.values=[0.1,0.05,0.01]")
    steps = np.array([0, 1, 9, 10, 11, 99, 100, 101, 12345])
    expected = np.where(steps <= 10, 0.1, np.where(steps <= 100, 0.05, 0.01))
    np.testing.assert_allclose(rates(build_schedule(0.5, cfg.scheduler), steps), expected, rtol=1e-6)


def test_piecewise_values_scale_with_the_phases_lr_factor():
    # Transfer learning's fine-tuning phase runs at lr_factor times the configured rates, piecewise's too.
    cfg = tiny_config("scheduler=piecewise", "scheduler.boundaries=[10]", "scheduler.values=[0.1,0.02]")
    optimizer = build_optimizer(cfg, lr_factor=0.25)
    steps = np.array([0, 10, 11, 500])
    seen = []
    for t in steps:
        optimizer.iterations.assign(int(t))
        seen.append(float(optimizer.learning_rate))  # the schedule at the optimizer's step count
    np.testing.assert_allclose(seen, 0.25 * np.where(steps <= 10, 0.1, 0.02), rtol=1e-6)


def one_cycle_formula(t, peak, total, start, end, final):
    """1cycle written out piece by piece (HML ch. 11): up, down, then the final decay."""
    cycle = (1 - final) * total
    half = cycle / 2
    lo, last = peak * start, peak * end
    if t <= half:
        return lo + (peak - lo) * t / half
    if t <= cycle:
        return peak - (peak - lo) * (t - half) / half
    return lo - (lo - last) * min(t - cycle, total - cycle) / (total - cycle)


@pytest.mark.parametrize("total, start, end, final", [(1000, 0.1, 0.001, 0.1), (200, 0.05, 0.0, 0.25), (77, 0.1, 0.01, 0.0)])
def test_one_cycle_schedule_matches_its_formula_at_every_step(total, start, end, final):
    cfg = tiny_config("scheduler=one_cycle", f"scheduler.start_factor={start}", f"scheduler.end_factor={end}",
                      f"scheduler.final_fraction={final}")
    steps = np.arange(0, total + 20)
    expected = [one_cycle_formula(t, 0.2, total, start, end, final) if final or t <= total else 0.2 * end
                for t in steps]
    np.testing.assert_allclose(rates(build_schedule(0.2, cfg.scheduler, total), steps), expected, rtol=1e-5, atol=1e-8)


def test_one_cycle_peaks_at_half_the_cycle_and_ends_low():
    cfg = tiny_config("scheduler=one_cycle")
    lr = rates(build_schedule(0.1, cfg.scheduler, 1000), range(1001))
    assert lr.argmax() == 450 and lr.max() == pytest.approx(0.1)
    # float32: the final rate is a difference of rates 100 times larger, so it is exact to about 1e-9.
    assert lr[[0, 900, 1000]] == pytest.approx([0.01, 0.01, 1e-4], rel=1e-4)


@pytest.mark.parametrize("warmup, alpha", [(0, 0.0), (0, 0.1), (50, 0.0), (50, 0.2)])
def test_cosine_schedule_matches_its_formula_at_every_step(warmup, alpha):
    total = 400
    cfg = tiny_config("scheduler=cosine", f"scheduler.warmup_steps={warmup}", f"scheduler.alpha={alpha}")
    steps = np.arange(0, total + 10)
    decay = total - warmup
    t = np.clip(steps - warmup, 0, decay)
    cosine = 0.3 * (alpha + (1 - alpha) * 0.5 * (1 + np.cos(np.pi * t / decay)))
    expected = np.where(steps < warmup, 0.3 * steps / max(warmup, 1), cosine)
    np.testing.assert_allclose(rates(build_schedule(0.3, cfg.scheduler, total), steps), expected, rtol=1e-5, atol=1e-7)


def test_scheduler_total_steps_overrides_the_run_length():
    cfg = tiny_config("scheduler=cosine", "scheduler.total_steps=100")
    lr = build_schedule(1.0, cfg.scheduler, total_steps=5000)
    assert float(lr(50)) == pytest.approx(0.5) and float(lr(100)) == pytest.approx(0.0, abs=1e-7)


def test_adamw_decays_weights_by_lr_times_weight_decay():
    # With a zero gradient Adam's step is 0, so AdamW's update is the decoupled decay alone: w <- w (1 - lr wd).
    opt = build_optimizer(tiny_config("optimizer=adamw", "optimizer.lr=0.1", "optimizer.weight_decay=0.5"))
    variable = keras.Variable(np.array([2.0, -4.0], dtype="float32"))
    opt.apply_gradients([(keras.ops.zeros((2,)), variable)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), [2.0 * 0.95, -4.0 * 0.95], rtol=1e-6)


def test_adagrad_scales_steps_by_accumulated_squared_gradients():
    # Keras' Adagrad: accumulator a = 0.1 + g^2, step lr * g / sqrt(a + eps); two steps of g = 1 and lr 1.
    opt = build_optimizer(tiny_config("optimizer=adagrad", "optimizer.lr=1.0"))
    variable = keras.Variable(np.zeros(1, dtype="float32"))
    for _ in range(2):
        opt.apply_gradients([(keras.ops.ones((1,)), variable)])
    expected = -(1 / np.sqrt(1.1 + 1e-7) + 1 / np.sqrt(2.1 + 1e-7))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), [expected], rtol=1e-5)


def test_adamax_follows_its_max_norm_formula():
    # HML ch. 11: m <- b1 m + (1 - b1) g, s <- max(b2 s, |g|), w <- w - lr m / ((1 - b1^t) (s + eps)).
    opt = build_optimizer(tiny_config("optimizer=adamax", "optimizer.lr=0.1", "optimizer.beta_1=0.8", "optimizer.beta_2=0.5"))
    variable = keras.Variable(np.zeros(2, dtype="float32"))
    w, m, s = np.zeros(2), np.zeros(2), np.zeros(2)
    for t, g in enumerate(([1.0, -2.0], [3.0, 0.5], [-1.0, 0.25]), start=1):
        opt.apply_gradients([(keras.ops.convert_to_tensor(np.array(g, dtype="float32")), variable)])
        m = 0.8 * m + 0.2 * np.array(g)
        s = np.maximum(0.5 * s, np.abs(g))
        w = w - 0.1 * m / ((1 - 0.8**t) * (s + 1e-7))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), w, rtol=1e-5)


@pytest.mark.parametrize("name", schema.KERAS_OPTIMIZERS)
def test_every_keras_optimizer_name_trains_with_schedule_and_clipping(name):
    # sgd.yaml's momentum and nesterov, which only SGD takes, are removed (validate refuses them for another optimizer)
    cfg = tiny_config(f"optimizer.name={name}", "~optimizer.momentum", "~optimizer.nesterov", "scheduler=exponential", "clipping=value")
    opt = build_optimizer(cfg, total_steps=10)
    assert type(opt).__name__.lower() == name
    variable = keras.Variable(np.ones(3, dtype="float32"))
    opt.apply_gradients([(keras.ops.ones((3,)), variable)])
    assert np.all(keras.ops.convert_to_numpy(variable) < 1)


def test_the_name_tables_are_what_keras_resolves():
    from keras.src import activations, initializers, optimizers

    wrappers = {"optimizer", "lossscaleoptimizer", "multioptimizer", "optimizermap"}
    assert set(schema.KERAS_OPTIMIZERS) == set(optimizers.ALL_OBJECTS_DICT) - wrappers
    assert set(schema.KERAS_ACTIVATIONS) == set(activations.ALL_OBJECTS_DICT)
    assert set(schema.KERAS_INITIALIZERS) == set(initializers.ALL_OBJECTS_DICT) - {"initializer", "Initializer"}
    builtin = {"auto", "prelu"}  # dnnexp's own: the initializer picked by the activation, Keras' PReLU layer
    assert set(schema.ACTIVATIONS + schema.INITIALIZERS + schema.OPTIMIZERS) - builtin <= set(
        schema.KERAS_ACTIVATIONS + schema.KERAS_INITIALIZERS + schema.KERAS_OPTIMIZERS
    )


def test_the_argument_tables_are_the_signatures_of_keras_objects():
    """keras_args' tables, which check a YAML's extra keys without loading Keras, say what Keras' objects take."""
    import inspect

    from dnnexp.config import keras_args

    def arguments(function, skip=()) -> dict:
        return {name: p.default for name, p in inspect.signature(function).parameters.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in {"self", "name", *skip}}

    def same(table: dict, taken: dict, what: str) -> None:
        assert set(table) == set(taken), what
        for arg, default in taken.items():
            if default is not None and default is not inspect.Parameter.empty:
                assert keras_args.accepts(default, table[arg]), (what, arg, default)

    for name in schema.KERAS_OPTIMIZERS:
        taken = arguments(type(keras.optimizers.get(name)).__init__, keras_args.SET_ELSEWHERE)
        same(keras_args.OPTIMIZER_ARGUMENTS[name], taken, name)
    layers = {"leaky_relu": {"alpha": arguments(keras.layers.LeakyReLU.__init__)["negative_slope"]},
              "prelu": arguments(keras.layers.PReLU.__init__)}
    for name in schema.KERAS_ACTIVATIONS + ("prelu",):
        taken = layers.get(name) or arguments(keras.activations.get(name), {"x"})
        same(keras_args.ACTIVATION_ARGUMENTS[name], taken, name)
    constant = {"constant": keras.initializers.Constant, "Constant": keras.initializers.Constant}  # get() needs a value
    for name in schema.KERAS_INITIALIZERS:
        initializer = constant.get(name) or type(keras.initializers.get(name))
        same(keras_args.INITIALIZER_ARGUMENTS[name], arguments(initializer.__init__), name)
    assert set(keras_args.ACTIVATION_ARGUMENTS) == set(schema.KERAS_ACTIVATIONS + ("prelu",))
    assert set(keras_args.INITIALIZER_ARGUMENTS) == set(schema.KERAS_INITIALIZERS + ("auto",))
    assert set(keras_args.OPTIMIZER_ARGUMENTS) == set(schema.KERAS_OPTIMIZERS)


def test_an_extra_keras_argument_reaches_the_optimizer():
    cfg = tiny_config("optimizer=adam", "+optimizer.epsilon=0.25", "+optimizer.amsgrad=true")
    opt = build_optimizer(cfg)
    assert (opt.epsilon, opt.amsgrad) == (0.25, True)


PER_EPOCH = 7  # steps per epoch in the schedule tests below


def epoch_rates(*overrides: str, total_epochs: int = 12, lr0: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(finished epochs at each step, the rate at each step) of a per-epoch schedule over total_epochs."""
    cfg = tiny_config("scheduler.unit=epoch", *overrides)
    schedule = build_schedule(lr0, cfg.scheduler, total_epochs * PER_EPOCH, PER_EPOCH)
    steps = np.arange(total_epochs * PER_EPOCH + 1)
    return steps // PER_EPOCH, rates(schedule, steps)


def test_per_epoch_exponential_is_hmls_epoch_formula_and_constant_within_an_epoch():
    epochs, lr = epoch_rates("scheduler=exponential", "scheduler.s=2")
    np.testing.assert_allclose(lr, 0.1 * 0.1 ** (epochs / 2), rtol=1e-5)  # HML: lr0 * 0.1^(epoch / s)


def test_per_epoch_piecewise_boundaries_count_epochs():
    epochs, lr = epoch_rates("scheduler=piecewise", "scheduler.boundaries=[4,14]", "scheduler.values=[0.01,0.005,0.001]",
                             total_epochs=20)
    # HML's piecewise_constant_fn: 0.01 for epoch < 5, 0.005 for epoch < 15, then 0.001 (boundaries t <= 4, t <= 14).
    np.testing.assert_allclose(lr, np.where(epochs < 5, 0.01, np.where(epochs < 15, 0.005, 0.001)), rtol=1e-6)


@pytest.mark.parametrize("overrides, formula", [
    (["scheduler=power", "scheduler.s=3", "scheduler.c=2"], lambda e: 0.1 / (1 + e / 3) ** 2),
    (["scheduler=one_cycle"], lambda e: [one_cycle_formula(t, 0.1, 12, 0.1, 0.001, 0.1) for t in e]),
    (["scheduler=cosine", "scheduler.warmup_steps=2"],
     lambda e: np.where(e < 2, 0.1 * e / 2, 0.1 * 0.5 * (1 + np.cos(np.pi * np.clip(e - 2, 0, 10) / 10)))),
])
def test_per_epoch_schedules_count_their_lengths_in_epochs(overrides, formula):
    epochs, lr = epoch_rates(*overrides)  # one_cycle and cosine stretch over the run's 12 epochs
    np.testing.assert_allclose(lr, formula(epochs), rtol=1e-5, atol=1e-8)

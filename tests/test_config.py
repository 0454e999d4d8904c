"""The config schema: every choice composes, and every bad value is refused by name (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose_config
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from dnnexp import config as schema
from dnnexp.cli import config_dir
from dnnexp.config import ConfigError, hidden_units, keep_monitor, validate
from dnnexp.typos import composition_error


@pytest.mark.parametrize(
    "group, names",
    [
        ("dataset", schema.DATASETS),
        ("model", schema.MODELS),
        ("activation", schema.ACTIVATIONS),
        ("initializer", schema.INITIALIZERS),
        ("normalization", schema.NORMALIZATIONS),
        ("optimizer", schema.OPTIMIZERS),
        ("scheduler", schema.SCHEDULERS),
        ("clipping", schema.CLIPPINGS),
    ],
)
def test_every_choice_has_a_yaml_that_composes_and_validates(group, names):
    files = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
    assert files == sorted(names)
    for name in names:
        cfg = validate(compose_config(f"{group}={name}"))
        assert getattr(cfg, group).name == name


def test_default_config_is_the_lecture_baseline():
    cfg = validate(compose_config())
    assert (cfg.dataset.name, cfg.activation.name, cfg.initializer.name) == ("mnist_5k", "relu", "auto")
    assert (cfg.normalization.name, cfg.scheduler.name, cfg.clipping.name) == ("none", "constant", "none")
    # The run keeps its best epoch by val_loss, as ModelCheckpoint(save_best_only=True) does, and ranks by that model.
    assert (cfg.trainer.keep, keep_monitor(cfg), cfg.optimized_metric) == ("best", "val_loss", "val_accuracy")


def test_kept_epoch_follows_early_stoppings_monitor_unless_set():
    cfg = validate(compose_config("regularization=early_stopping", "regularization.monitor=val_accuracy"))
    assert keep_monitor(cfg) == "val_accuracy"
    cfg = validate(compose_config("regularization=early_stopping", "regularization.restore_best_weights=false",
                                  "trainer.monitor=val_accuracy"))
    assert (keep_monitor(cfg), cfg.regularization.monitor) == ("val_accuracy", "val_loss")


def test_units_list_sets_depth_and_sizes():
    cfg = validate(compose_config("model.units=[300,100]", "model.hidden_layers=7"))
    assert hidden_units(cfg.model) == [300, 100]
    cfg = validate(compose_config("model.units=50", "model.hidden_layers=3"))
    assert hidden_units(cfg.model) == [50, 50, 50]


PRESETS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def test_the_lecture_has_its_presets():
    assert {"activations", "batchnorm", "lr_schedules", "clipping", "regularization", "learning_rate"} <= set(PRESETS)


@pytest.mark.parametrize("experiment", PRESETS)
def test_every_preset_is_a_sweep_whose_whole_grid_composes_and_validates(experiment):
    """`dnnexp +experiment=NAME` runs the comparison with or without -m (sweep_params checks hydra.mode),
    and no job of its grid can fail on a typo."""
    import itertools

    from conftest import sweep_params

    grid = sweep_params(experiment)
    jobs = list(itertools.product(*grid.values()))
    assert len(jobs) > 1, f"{experiment} compares nothing"
    for values in jobs:  # jobs that differ only in values (trainer.seed) share one composition (compose_config)
        overrides = [f"{key}={value}" for key, value in zip(grid, values)]
        cfg = validate(compose_config(f"+experiment={experiment}", *overrides))
        assert cfg.task_name == experiment  # its runs write under outputs/<preset>/


@pytest.mark.parametrize("overrides", [
    ["trainer.seed=2", "+experiment=activations", "activation=elu"],
    ["optimizer=adamw", "optimizer.weight_decay=1e-5", "model.units=[300,100]", "~claims"],
    ["scheduler=piecewise", "scheduler.boundaries=[4,14]", "scheduler.values=[0.01,0.005,0.001]", "dataset.classes=[8,9]"],
    ["+experiment=lecture_notebook", "+reference=lecture_power", "trainer.epochs=1", "dataset.data_dir=/data/fm"],
])
def test_compose_config_composes_what_hydra_composes(overrides):
    """conftest.compose_config composes each set of group choices once and sets the other values on a copy."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        expected = compose(config_name="config", overrides=overrides)
    for _ in range(2):  # composed, then from the cache
        assert OmegaConf.to_container(compose_config(*overrides)) == OmegaConf.to_container(expected)
        assert OmegaConf.is_struct(compose_config(*overrides))
    assert compose_config(*overrides) is not compose_config(*overrides)  # each caller has its own copy to change


def test_dropout_and_early_stopping_together():
    cfg = validate(compose_config("regularization=dropout_early_stopping", "regularization.rate=0.3"))
    assert cfg.regularization.rate == 0.3 and cfg.regularization.early_stopping


BAD_VALUES = [
    ("trainer.epochs=abc", "trainer.epochs must be an integer, got 'abc'"),
    ("trainer.epochs=0", "trainer.epochs must be in [1, inf], got 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be in [1, inf], got 0"),
    ("regularization.rate=1.5", "regularization.rate must be in [0, 1), got 1.5"),
    ("optimizer.lr=-0.1", "optimizer.lr must be in (0, inf), got -0.1"),
    ("optimizer.lr=fast", "optimizer.lr must be a number, got 'fast'"),
    ("optimizer.momentum=1.0", "optimizer.momentum must be in [0, 1), got 1.0"),
    ("scheduler=power scheduler.s=0", "scheduler.s must be in (0, inf), got 0.0"),
    ("scheduler=performance scheduler.factor=2", "scheduler.factor must be in (0, 1), got 2.0"),
    ("clipping.threshold=-1", "clipping.threshold must be in (0, inf), got -1"),
    ("activation.name=relux", "activation.name must be one of relu, leaky_relu"),
    ("regularization.layers=output", "regularization.layers must be one of all, hidden, input, last; got 'output'"),
    ("model.units=[10,0]", "model.units must be a positive integer or a list of them, got [10, 0]"),
    ("normalization=batchnorm_after normalization.momentum=1.5", "normalization.momentum must be in [0, 1], got 1.5"),
    ("dataset.standardize=maybe", "dataset.standardize must be true or false, got 'maybe'"),
    ("optimized_metric=speed", "optimized_metric must be one of val_accuracy, val_loss, test_accuracy, test_loss; got 'speed'"),
    ("optimized_metric=best_val_accuracy", "optimized_metric must be one of val_accuracy"),  # not the kept model's
    ("trainer.keep=worst", "trainer.keep must be one of best, last; got 'worst'"),
    ("trainer.monitor=loss", "trainer.monitor must be one of val_loss, val_accuracy; got 'loss'"),
    ("regularization=early_stopping trainer.monitor=val_accuracy",
     "trainer.monitor=val_accuracy and regularization.monitor=val_loss would keep two different best epochs"),
    ("mode=plot_schedule scheduler=performance", "scheduler=performance cannot be plotted before training"),
    ("mode=train_fast", "mode must be one of train, lr_find, plot_schedule; got 'train_fast'"),
    ("scheduler=piecewise scheduler.boundaries=[10] scheduler.values=[0.1]",
     "scheduler.values must have one more entry than scheduler.boundaries, got 1 values for 1 boundaries"),
    ("scheduler=piecewise scheduler.boundaries=[10,5] scheduler.values=[0.1,0.1,0.1]",
     "scheduler.boundaries must be increasing positive step counts, got [10, 5]"),
    ("scheduler=one_cycle scheduler.final_fraction=1", "scheduler.final_fraction must be in [0, 1), got 1.0"),
    ("scheduler=cosine scheduler.warmup_steps=-5", "scheduler.warmup_steps must be in [0, inf], got -5"),
    ("optimizer=adamw optimizer.weight_decay=-1", "optimizer.weight_decay must be in [0, inf], got -1.0"),
    ("regularization=l2 regularization.penalty=l3", "regularization.penalty must be one of none, l1, l2, l1_l2; got 'l3'"),
    ("regularization=max_norm regularization.max_norm=0", "regularization.max_norm must be in (0, inf), got 0.0"),
    ("regularization=dropout regularization.dropout_kind=gaussian", "regularization.dropout_kind must be one of dropout, alpha_dropout"),
    ("evaluation.mc_samples=5", "evaluation.mc_samples=5 needs dropout: set regularization=dropout"),
    ("model=cnn model.filters=[8,0]", "model.filters must be a non-empty list of positive integers, got [8, 0]"),
    ("diagnostics=on diagnostics.vanishing_below=2", "diagnostics.vanishing_below must be in (0, 1), got 2.0"),
    ("diagnostics=on model.hidden_layers=0", "diagnostics=on measures the hidden layers, and model.hidden_layers=0 builds none"),
    ("diagnostics=on model.units=[]", "diagnostics=on measures the hidden layers, and model.units=[] builds none"),
    ("lr_find.max_lr=1e-6", "lr_find.max_lr must be in (1e-05, inf), got 1e-06"),
    ("optimizer.name=adamx", "optimizer.name must be one of sgd, adam, nadam, rmsprop, adagrad, adamw, adamax, "
     "adadelta, adafactor, ftrl, lion, or any other identifier keras.optimizers.get resolves (e.g. muon, "),
    ("initializer.name=he_avg", "or any other identifier keras.initializers.get resolves"),
    ("initializer=variance_scaling initializer.mode=fan_x", "initializer.mode must be one of fan_in, fan_out, fan_avg; got 'fan_x'"),
    ("initializer=variance_scaling initializer.scale=0", "initializer.scale must be in (0, inf), got 0.0"),
    ("dataset.raw_pixels=true dataset.standardize=true",
     "dataset.raw_pixels=true and dataset.standardize=true contradict each other: choose one"),
    ("dataset.raw_pixels=true transfer=mobilenet_v2", "dataset.raw_pixels=true cannot change the input of a pretrained network"),
    ("initializer=variance_scaling initializer.distribution=normal",
     "initializer.distribution must be one of truncated_normal, untruncated_normal, uniform; got 'normal'"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES)
def test_bad_value_is_refused_with_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(*override.split()))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("activation=relux", "activation=relux is not a choice; did you mean relu? (choices: elu, gelu, leaky_relu, mish, prelu, relu, selu, sigmoid, swish, tanh)"),
    ("scheduler=foo", "scheduler=foo is not a choice (choices: constant, cosine, exponential, one_cycle, performance, piecewise, power)"),
    ("clipping=globl_norm", "clipping=globl_norm is not a choice; did you mean global_norm? (choices: global_norm, none, norm, value)"),
    ("model.unit=3", "model.unit is not a key of model; did you mean model.units? (keys: hidden_layers, name, units)"),
])
def test_an_unknown_choice_or_key_is_named_with_the_closest_valid_one(override, message):
    """What dnnexp answers (cli._typos_answered) to the exception Hydra raises."""
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(override)
    assert composition_error(err.value) == message


def test_jax_backend_without_jax_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"trainer.backend=jax needs JAX: pip install 'dnnexp\[jax\]'"):
        validate(compose_config("trainer.backend=jax"))

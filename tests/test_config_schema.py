"""The declarative schema and the door it guards: interpolations, extra Keras arguments, unquoted values,
the choice lists the builders are keyed by, and the one flattener. No TensorFlow (subprocess check below)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_driver import IN_PROCESS, run_command
from conftest import TINY, compose_config

from dnnexp.cli import config_dir
from dnnexp.config import (
    UNHASHED_KEYS, Config, ConfigError, RegularizationConfig, hashed_config, hidden_units, registry, validate,
)
from dnnexp.flat_config import flatten

UNSET = "DNNEXP_TEST_UNSET_VARIABLE"


def refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose_config(*overrides))
    assert "\n" not in str(err.value)
    return str(err.value)


# ----------------------------------------------------------------------------- interpolations (issue 31, item 2)


def test_an_interpolated_value_is_checked_as_the_value_it_resolves_to(monkeypatch):
    assert refusal("optimizer.momentum=${oc.env:HOME}") == (
        f"optimizer.momentum must be a number, got {os.environ['HOME']!r} (from ${{oc.env:HOME}})"
    )
    monkeypatch.setenv("DNNEXP_TEST_MOMENTUM", "0.5")
    assert validate(compose_config("optimizer.momentum=${oc.env:DNNEXP_TEST_MOMENTUM}")).optimizer.momentum == 0.5
    monkeypatch.setenv("DNNEXP_TEST_MOMENTUM", "1.5")
    assert refusal("optimizer.momentum=${oc.env:DNNEXP_TEST_MOMENTUM}") == "optimizer.momentum must be in [0, 1), got 1.5"


def test_an_interpolation_that_cannot_be_resolved_names_its_key_text_and_type(monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    assert refusal(f"optimizer.momentum=${{oc.env:{UNSET}}}") == (
        f"optimizer.momentum=${{oc.env:{UNSET}}} cannot be resolved (Environment variable '{UNSET}' not found); "
        "optimizer.momentum must be a number"
    )
    assert refusal("trainer.epochs=${trainer.epoch}").startswith(
        "trainer.epochs=${trainer.epoch} cannot be resolved (")


def interpolating_configs(folder: Path) -> Path:
    """A --config-dir whose preset sets a value through an unset environment variable."""
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "from_env.yaml").write_text(f"# @package _global_\noptimizer:\n  momentum: ${{oc.env:{UNSET}}}\n")
    return folder


@pytest.mark.parametrize("args, message", [
    (["optimizer.momentum=${oc.env:HOME}"], "optimizer.momentum must be a number, got "),
    ([f"optimizer.momentum=${{oc.env:{UNSET}}}"], f"optimizer.momentum=${{oc.env:{UNSET}}} cannot be resolved"),
    (["--config-dir={d}", "+experiment=from_env"], f"optimizer.momentum=${{oc.env:{UNSET}}} cannot be resolved"),
    (["optimizer=adam", "+optimizer.epsilon=abc"], "optimizer.epsilon must be a number, got 'abc'"),
    (["optimizer=adam", "+optimizer.amsgrad=maybe"], "optimizer.amsgrad must be true or false, got 'maybe'"),
    (["regularization=dropout", "regularization.rate=abc"], "regularization.rate must be a number, got 'abc'"),
    (["task_name=café"], "task_name=café: a value with non-ASCII letters must be quoted for Hydra, as in 'task_name=\"café\"'"),
    (["task_name=my", "run"], "run is not KEY=VALUE; a value with spaces must be quoted as one argument"),
])
def test_the_command_refuses_in_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.delenv(UNSET, raising=False)
    conf = interpolating_configs(tmp_path / "conf")
    args = [a.replace("{d}", str(conf)) for a in args]
    options, overrides = [a for a in args if a.startswith("--")], [a for a in args if not a.startswith("--")]
    work = tmp_path / "work"
    work.mkdir()
    code, out, err = run_command([*options, *IN_PROCESS, *TINY, *overrides], work)
    assert code == 2, out + err
    assert err.strip().startswith(f"dnnexp: error: {message}"), err
    assert len(err.strip().splitlines()) == 1, err
    assert list(work.iterdir()) == []


def test_quoted_values_with_spaces_and_non_ascii_letters_are_accepted():
    cfg = validate(compose_config('task_name="café au lait"', "dataset.data_dir=/tmp/my data"))
    assert (cfg.task_name, cfg.dataset.data_dir) == ("café au lait", "/tmp/my data")


# ----------------------------------------------------------------------------- Keras arguments (issue 31, item 3)


@pytest.mark.parametrize("overrides, message", [
    (["optimizer=adam", "+optimizer.epsilon=abc"], "optimizer.epsilon must be a number, got 'abc'"),
    (["optimizer=adam", "+optimizer.amsgrad=maybe"], "optimizer.amsgrad must be true or false, got 'maybe'"),
    (["optimizer=adam", "+optimizer.epsilonn=1e-4"], "optimizer.epsilonn is not an argument of optimizer adam; "
     "did you mean optimizer.epsilon? (arguments: amsgrad, beta_1, beta_2, ema_momentum, "),
    (["+optimizer.epsilon=1e-4"], "optimizer.epsilon is not an argument of optimizer sgd (arguments: "),
    (["optimizer=adam", "+optimizer.clipnorm=1"], "optimizer.clipnorm is set by clipping=norm, not as an argument"),
    (["optimizer=adam", "+optimizer.ns_steps=2.5"], "optimizer.ns_steps is not an argument of optimizer adam"),
    (["optimizer.name=adam"], "optimizer.momentum is not an argument of optimizer adam"),  # sgd.yaml's momentum
    (["optimizer.name=muon", "+optimizer.ns_steps=2.5"], "optimizer.ns_steps must be an integer, got 2.5"),
    (["activation=elu", "+activation.alpha=big"], "activation.alpha must be a number, got 'big'"),
    (["activation=relu", "+activation.alpha=0.1"], "activation.alpha is not an argument of activation relu (arguments: max_value, negative_slope, threshold)"),
    (["initializer=he_normal", "+initializer.seed=x"], "initializer.seed must be an integer, got 'x'"),
    (["initializer=auto", "+initializer.seed=1"], "initializer.seed is not an argument of initializer auto (arguments: none)"),
])
def test_an_extra_keras_argument_is_checked_against_its_objects_signature(overrides, message):
    assert refusal(*overrides).startswith(message)


def test_extra_keras_arguments_of_the_right_name_and_type_pass():
    cfg = validate(compose_config("optimizer=adam", "+optimizer.epsilon=1", "+optimizer.amsgrad=true",
                                  "activation=elu", "+activation.alpha=0.5", "initializer=he_normal", "+initializer.seed=3"))
    assert cfg.optimizer.args == {"epsilon": 1, "amsgrad": True}
    assert (cfg.activation.alpha, cfg.initializer.args) == (0.5, {"seed": 3})


# ----------------------------------------------------------------------------- the schema


def test_every_key_is_in_the_schemas_reference_with_its_meaning():
    """`python -m dnnexp.config` prints each key's type, default, allowed values and meaning, from the schema."""
    from dnnexp.config.__main__ import reference

    rows = [line.split(" | ") for line in reference().splitlines()[2:]]
    keys = [row[0].lstrip("| ") for row in rows]
    params = flatten(dataclasses.asdict(Config()))
    assert {k for k in params if not k.startswith("logger.")} <= set(keys)
    assert {"activation.args", "logger.wandb.mode", "logger.mlflow.tracking_uri"} <= set(keys)  # an empty dict, trackers off
    assert [row for row in rows if len(row[-1].rstrip(" |")) < 5] == []
    assert "| regularization.rate | float | 0.0 | [0, 1) | dropout rate; 0 means no dropout layers |" in reference()
    assert "| scheduler.values | list[float] | [] | each (0, inf) | piecewise: the rates, one more than boundaries |" in reference()
    assert "| trainer.monitor | str \\| None | null | one of val_loss, val_accuracy | " in reference()


def test_an_empty_units_list_is_refused_and_a_units_list_sets_hidden_layers():
    """model.units=[] built no hidden layer while the saved config said hidden_layers: 2; hidden_layers=0 says it."""
    assert refusal("model.units=[]") == ("model.units must list the units of at least one layer, got []; "
                                         "for no hidden layer set model.hidden_layers=0")
    cfg = validate(compose_config("model.hidden_layers=0"))
    assert (hidden_units(cfg.model), cfg.model.hidden_layers) == ([], 0)
    cfg = validate(compose_config("model.units=[30,20,10]"))
    assert (cfg.model.hidden_layers, hashed_config(cfg)["model.hidden_layers"]) == (3, 3)


def test_regularization_yamls_set_only_what_differs_from_the_schema():
    defaults = dataclasses.asdict(RegularizationConfig())
    files = sorted((Path(config_dir()) / "regularization").glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        body = yaml.safe_load(path.read_text())
        assert body.pop("defaults") == ["none"], path.name
        assert body and all(key in defaults and value != defaults[key] for key, value in body.items()), path.name
    assert validate(compose_config("regularization=none")).regularization == RegularizationConfig()
    assert validate(compose_config("regularization=dropout")).regularization == RegularizationConfig(rate=0.2)


def test_a_builders_table_must_name_exactly_the_choices():
    assert registry(("a", "b"), {"b": 2, "a": 1}) == {"a": 1, "b": 2}
    with pytest.raises(RuntimeError, match=r"a table of choices has \['a'\], but the choices are \['a', 'b'\]"):
        registry(("a", "b"), {"a": 1})


def test_the_dataset_readers_are_keyed_by_the_dataset_choices():
    from dnnexp import data
    from dnnexp.config import DATASETS

    assert list(data.LOADERS) == list(DATASETS)
    with pytest.raises(ConfigError, match="dataset.name must be one of mnist_5k, fashion_mnist, cifar10; got 'imagenet'"):
        data.load_raw("imagenet", None)


# ----------------------------------------------------------------------------- the one flattener


def test_hashing_the_trackers_and_the_results_flatten_a_config_alike(tmp_path):
    from dnnexp.loggers import flat_params
    from dnnexp.results.runs import read_run

    cfg = validate(compose_config("model.units=[30,20]", "optimizer=adam", "+optimizer.epsilon=0.1", "logger=tensorboard"))
    params = flat_params(cfg)
    assert params["model.units"] == "[30, 20]" and params["optimizer.args.epsilon"] == "0.1"
    assert not any(key.startswith("logger.") for key in params)
    assert set(hashed_config(cfg)) == {k for k in params if k not in UNHASHED_KEYS}
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    row, _, _ = read_run(tmp_path)
    assert {k for k in params if k not in ("claims", "claims_margin")} <= set(row)  # the sweep-level keys the report reads apart and row["model.units"] == "[30, 20]"
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}, skip={"x"}) == {"a.b": 1, "d": [1]}
    assert flatten({"logger": {"mlflow": {"x": 1}}, "e": None}, skip={"logger"}) == {"e": None}


def test_the_config_package_loads_no_tensorflow_or_keras():
    code = ("import sys; sys.path.insert(0, 'tests'); from conftest import compose_config; "
            "from dnnexp.config import validate, config_hash; config_hash(validate(compose_config('optimizer=adam'))); "
            "import dnnexp.data, dnnexp.results.runs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == "[]"

"""Shared helpers: compose configs in-process with Hydra's compose API, train tiny runs once."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dnnexp.cli import config_dir
from dnnexp.config import Config, validate

# A few hundred samples, a narrow net, two epochs: seconds per run on two cores.
TINY = [
    "dataset.limit=300",
    "dataset.val_size=100",
    "dataset.test_size=200",
    "model.units=16",
    "trainer.epochs=2",
    "trainer.verbose=false",
]


# The test files that take longest (their tests' durations added up, under -n 2), longest first. With
# --dist loadfile (pyproject.toml) a file runs on one worker, and xdist would hand out files with
# the most tests first, leaving these few-test, long files for the end; started first, they
# cannot leave one worker running alone at the end while the other has finished.
LONGEST_FIRST = ["test_resume.py", "test_presets.py", "test_transfer.py", "test_config.py", "test_jax.py", "test_parity.py",
                 "test_bad_input.py", "test_launchers.py", "test_faults.py", "test_cli.py", "test_train.py",
                 "test_notebook.py", "test_runtime.py", "test_loggers.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


def compose_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The config `dnnexp <overrides>` would compose, without Hydra's runtime.

    Hydra composes a config from the config-group choices among the overrides, then sets the
    other overrides' values on it (ConfigLoaderImpl._apply_overrides_to_config). The first
    step costs a fifth of a second and its result depends on the group choices alone, so it is
    done once per distinct set of them (_composed_groups); the values are then set on a copy,
    by Hydra's own function. The hydra node, and overrides Hydra refuses in compose (sweeps),
    go through Hydra's compose as they are.
    """
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        split = None if return_hydra_config else _split_overrides(list(overrides))
        if split is None:
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        groups, values = split
        cfg = copy.deepcopy(_composed_groups(groups))
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg


def _split_overrides(overrides: list[str]) -> tuple[tuple[str, ...], list] | None:
    """(the config-group overrides, the parsed others), decided as Hydra's defaults list decides; None for a sweep
    or an override Hydra's parser refuses, which go to Hydra's compose for its own answer."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    try:
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    except Exception:
        return None
    if any(o.is_sweep_override() for o in parsed):
        return None
    is_group = [loader.repository.group_exists(o.key_or_group) and not isinstance(o.value(), dict) for o in parsed]
    return tuple(o.input_line for o, group in zip(parsed, is_group) if group), [o for o, group in zip(parsed, is_group) if not group]


@functools.lru_cache(maxsize=None)
def _composed_groups(groups: tuple[str, ...]) -> DictConfig:
    """The config composed from these config-group overrides alone (called inside compose_config's initialize)."""
    return compose(config_name="config", overrides=list(groups))


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """The grid a preset sweeps (hydra.sweeper.params), checking that it runs as a multirun."""
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    return {key: str(values).split(",") for key, values in cfg.hydra.sweeper.params.items()}


def tiny_config(*overrides: str) -> Config:
    return validate(compose_config(*TINY, *overrides))


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `dnnexp ARGS` in a subprocess, as a user types it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def run_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `dnnexp ARGS` in this process, in ``cwd``, and return what run_cli returns: the exit code, what it printed.

    For tests about what a command makes, where a new interpreter adds nothing but its imports
    (TensorFlow's take about 9 s). Hydra logs nowhere (cli_driver.IN_PROCESS).
    """
    from cli_driver import IN_PROCESS, run_command

    argv = [*args, *IN_PROCESS]
    return subprocess.CompletedProcess(["dnnexp", *argv], *run_command(argv, cwd))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny default run, trained once and shared: (run folder, metrics)."""
    from dnnexp.train import train

    run_dir = tmp_path_factory.mktemp("run")
    metrics = train(tiny_config(), run_dir)
    return run_dir, metrics

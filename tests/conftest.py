"""Shared helpers: compose configs in-process with Hydra's compose API, train tiny runs once."""

from __future__ import annotations

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


def compose_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The config `dnnexp <overrides>` would compose, without Hydra's runtime."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


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
        [sys.executable, "-m", "dnnexp.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny default run, trained once and shared: (run folder, metrics)."""
    from dnnexp.train import train

    run_dir = tmp_path_factory.mktemp("run")
    metrics = train(tiny_config(), run_dir)
    return run_dir, metrics

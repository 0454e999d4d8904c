"""What each ``mode`` runs, in this process: the backend settled first, then the mode's function with its tracking.

Each mode's module loads Keras and its backend, so it is imported only once chosen. The
command (cli.py) and the child process of a job on another backend (child_process.py) both run
a mode through here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnnexp import backend_setup
from dnnexp.config import Config

# What each `mode` runs, as "module:function(config, run_dir)".
RUNNERS = {
    "train": "dnnexp.train:train",
    "lr_find": "dnnexp.lr_tools:lr_find",
    "plot_schedule": "dnnexp.lr_tools:plot_schedule",
}


def runner(config: Config) -> Callable[[Config, Path], dict[str, Any]]:
    """The function of the config's mode, once Keras is pointed at its backend (unless loaded already)."""
    backend_setup.choose(config.trainer)
    module, function = RUNNERS[config.mode].split(":")
    return getattr(importlib.import_module(module), function)  # Keras and its backend load here


def run_here(config: Config, run_dir: Path) -> dict[str, Any]:
    """Run the config's mode into ``run_dir`` in this process, tracked by its loggers."""
    run = runner(config)
    from dnnexp import loggers

    with loggers.tracking(config, run_dir):
        return run(config, run_dir)

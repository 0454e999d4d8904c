"""Hydra entry points. Thin: validate the config, then hand over to train.py.

TensorFlow is imported only once a run is about to train, so ``--help``,
``--cfg job`` and config errors answer in about a second.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


def config_dir() -> str:
    """conf/ inside an installed wheel, else conf/ at the top of the source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"dnnexp's conf/ folder is missing (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


# What each `mode` runs, as "module:function(config, run_dir)"; imported only when chosen,
# since each loads TensorFlow.
RUNNERS = {
    "train": "dnnexp.train:train",
    "lr_find": "dnnexp.lr_tools:lr_find",
    "plot_schedule": "dnnexp.lr_tools:plot_schedule",
}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _app(cfg: DictConfig) -> float | None:
    from rich.console import Console

    from dnnexp.config import ConfigError, validate
    from dnnexp.data import DataError  # numpy only, no TensorFlow
    from dnnexp.files import write_metrics

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    err_console = Console(stderr=True)
    try:
        config = validate(cfg)
        module, function = RUNNERS[config.mode].split(":")
        run = getattr(importlib.import_module(module), function)  # TensorFlow loads here
        metrics = run(config, run_dir)
    except (ConfigError, DataError) as err:
        err_console.print(f"[bold red]dnnexp: error:[/] {err}", highlight=False, soft_wrap=True)
        if not multirun:
            sys.exit(2)
        # In a sweep, one bad job is recorded and the others go on.
        write_metrics(run_dir, {"status": "failed", "error": str(err)})
        return float("nan")
    if config.mode != "train":
        return None  # the tools print their own one-line result
    from dnnexp.report import print_run_summary

    print_run_summary(metrics, run_dir, Console(quiet=not config.trainer.verbose))
    return metrics.get(config.optimized_metric)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()

"""Hydra entry points. Thin: validate the config, then hand over to train.py.

TensorFlow is imported only once a run is about to train, so ``--help``,
``--cfg job`` and config errors answer in about a second.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from dnnexp.files import RunFolderError, lock_run_folder, read_metrics, write_metrics


def config_dir() -> str:
    """conf/ inside an installed wheel, else conf/ at the top of the source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"dnnexp's conf/ folder is missing (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _app(cfg: DictConfig) -> float | None:
    from dnnexp.config import ConfigError, validate
    from dnnexp.data import DataError  # numpy only, no TensorFlow

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        config = validate(cfg)
        from dnnexp.train import train  # TensorFlow loads here

        metrics = train(config, run_dir)
    except (ConfigError, DataError, RunFolderError) as err:
        _print_error(str(err))
        if not multirun:
            sys.exit(2)
        # In a sweep, one bad job is recorded and the others go on.
        write_metrics(run_dir, {"status": "failed", "error": str(err)})
        return float("nan")
    except KeyboardInterrupt:
        folder = f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={run_dir}"
        _print_error(f"interrupted; to continue after the last finished epoch, run the same command with {folder}")
        sys.exit(130)  # the shell's code for Ctrl-C; in a sweep it stops the remaining jobs too
    except Exception as err:  # a bug, or a fault no check foresaw: still leave a record of it
        message = f"{type(err).__name__}: {err}"
        _print_error(message)
        write_metrics(run_dir, {"status": "failed", "error": message, "traceback": traceback.format_exc()})
        if not multirun:
            raise  # Hydra prints the traceback
        return float("nan")
    from dnnexp.report import print_run_summary

    print_run_summary(metrics, run_dir, Console(quiet=not config.trainer.verbose))
    return metrics.get(config.optimized_metric)


def _print_error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]dnnexp: error:[/] {message}", highlight=False, soft_wrap=True)


class ClaimOutputFolder(Callback):
    """Holds a lock on the run or sweep folder from before Hydra writes into it, so two runs never share one.

    The folder names carry microseconds, so two commands started in the same second
    already get different folders; the lock also refuses a run pointed (hydra.run.dir=...)
    at a folder another live run is writing.
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._claim(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._claim(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        self._lock.close()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._lock.close()

    def _claim(self, folder: Path) -> None:
        try:
            self._lock = lock_run_folder(folder)
        except RunFolderError as err:
            _print_error(str(err))
            sys.exit(2)  # SystemExit, since Hydra turns a callback's exceptions into warnings


class FailedJobs(Callback):
    """At the end of a multirun, names the jobs that failed; main() then exits with status 1."""

    failed: list[str] = []

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()), key=lambda d: (len(d.name), d.name))
        FailedJobs.failed = [f"{job}: {why}" for job in jobs if (why := _failure(job))]
        if FailedJobs.failed:
            lines = "\n".join(f"  {line}" for line in FailedJobs.failed)
            Console(stderr=True).print(
                f"[bold red]dnnexp: {len(FailedJobs.failed)} of {len(jobs)} jobs failed:[/]\n{lines}", highlight=False, soft_wrap=True
            )


def _failure(job_dir: Path) -> str | None:
    """Why a sweep job has no usable result, or None if it completed or diverged (a result too)."""
    try:
        metrics = read_metrics(job_dir)
    except FileNotFoundError:
        return "no metrics.json (the job did not finish)"
    except (OSError, ValueError) as err:
        return f"unreadable metrics.json ({err})"
    if not isinstance(metrics, dict):
        return "unreadable metrics.json (not a JSON object)"
    if metrics.get("status") == "failed":
        return str(metrics.get("error"))
    return None


def main() -> None:
    FailedJobs.failed = []
    _app()
    if FailedJobs.failed:
        sys.exit(1)


if __name__ == "__main__":
    # Hydra imports the callbacks from the module dnnexp.cli, which under `python -m` is not
    # this __main__ copy: run that module's main() so it sees what FailedJobs recorded.
    from dnnexp import cli

    cli.main()

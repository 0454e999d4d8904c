"""Hydra callbacks: what happens around the jobs of a run or sweep. No TensorFlow.

Configured in conf/hydra/default.yaml (``hydra.callbacks``): every run and sweep holds
its folder, and every multirun ends in its comparison table and a word on the jobs that
failed, without a second command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dnnexp.errors import refuse
from dnnexp.files import RunFolderError, lock_run_folder, read_metrics


def print_error(message: str) -> None:
    """One red line on stderr, the way dnnexp reports everything a user must fix."""
    Console(stderr=True).print(f"[bold red]dnnexp: error:[/] {message}", highlight=False, soft_wrap=True)


class Outcome:
    """What the command running in this process made, for its caller: cli.execute resets it, the API reads it.

    Hydra's entry point returns nothing and a job's return value stays inside its
    launcher, so the single run's folder (cli._app) and the sweep's report (SweepReport,
    in the process that started the sweep, whatever the launcher) are recorded here.
    """

    run_dir: ClassVar[Path | None] = None
    sweep_dir: ClassVar[Path | None] = None
    report: ClassVar[Any] = None  # the sweep's dnnexp.results.stats.Report

    @classmethod
    def reset(cls) -> None:
        cls.run_dir = cls.sweep_dir = cls.report = None


class SweepReport(Callback):
    """When a multirun ends: print the comparison table, write summary.csv, report.md and plots."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolving ${now:...} here caches it, so this is the folder the sweeper then creates.
        self.sweep_dir = Path(config.hydra.sweep.dir)
        check_typed_claims(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console

        from dnnexp.results.render import wide_console
        from dnnexp.results.runs import sweep_command
        from dnnexp.results.stats import ReportError
        from dnnexp.results.sweep import write_sweep_report

        command = sweep_command(OmegaConf.to_container(config.hydra.overrides))
        Outcome.sweep_dir = self.sweep_dir or Path(config.hydra.sweep.dir)
        try:
            Outcome.report = write_sweep_report(Outcome.sweep_dir, wide_console(), command)
        except ReportError as err:
            Console(stderr=True).print(f"[bold red]dnnexp: report:[/] {err}", highlight=False)


def check_typed_claims(config: DictConfig) -> None:
    """Refuse, before any job trains, a claim typed on the command line that names a variant the sweep will not run.

    A preset's own claims are not checked here: a user may narrow its grid on purpose, and the
    report then marks them "not checked".
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dnnexp.results.claims import ClaimError, check_grid

    parser = OverridesParser.create()
    typed = parser.parse_overrides([str(o) for o in config.hydra.overrides.task])
    if not any(o.key_or_group == "claims" for o in typed):
        return
    swept = parser.parse_overrides([f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]) + typed
    grid: dict[str, list[str]] = {}
    for override in swept:
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]
        grid[override.key_or_group] = values
    for key, choice in config.hydra.runtime.choices.items():
        grid.setdefault(key, [str(choice)])
    try:
        check_grid(config.get("claims") or [], grid)
    except ClaimError as err:
        refuse(str(err))  # a SystemExit, since Hydra turns a callback's exceptions into warnings


class ClaimOutputFolder(Callback):
    """Holds a lock on the run or sweep folder from before Hydra writes into it, so two runs never share one.

    The folder names carry microseconds, so two commands started in the same second
    already get different folders; the lock also refuses a run pointed (hydra.run.dir=...)
    at a folder another live run is writing.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._lock.close()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._lock.close()

    def __getstate__(self) -> dict[str, Any]:
        # The joblib launcher pickles the callbacks into its worker processes, and an open
        # file cannot be pickled; the lock stays with the process that took it.
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}

    def _claim(self, folder: Path) -> None:
        try:
            self._lock = lock_run_folder(folder)
        except RunFolderError as err:
            refuse(str(err))  # a SystemExit, since Hydra turns a callback's exceptions into warnings


class FailedJobs(Callback):
    """At the end of a multirun, names the jobs that failed; cli.main() then exits with status 1."""

    failed: list[str] = []  # the failed jobs' folders

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()), key=lambda d: (len(d.name), d.name))
        FailedJobs.failed = [str(job) for job in jobs if _failed(job)]
        if FailedJobs.failed:  # the report's notes above say why each one failed
            print_error(f"{len(FailedJobs.failed)} of {len(jobs)} jobs failed: {', '.join(FailedJobs.failed)}")


def _failed(job_dir: Path) -> bool:
    """A job with no usable result: failed, or no readable metrics.json (a diverged run is a result)."""
    try:
        metrics = read_metrics(job_dir)
    except (OSError, ValueError):
        return True
    return not isinstance(metrics, dict) or metrics.get("status") == "failed"

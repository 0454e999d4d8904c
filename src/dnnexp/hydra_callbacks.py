"""Hydra callbacks: what happens around the jobs of a run or sweep, each a call into the module that owns it. No TensorFlow.

Configured in conf/hydra/default.yaml (``hydra.callbacks``): every run and sweep holds
its folder (dnnexp.run_folder), and every multirun ends in its comparison table and a
word on the jobs that failed, without a second command. Hydra's entry point returns
nothing, a job's return value stays inside its launcher, and Hydra turns a callback's
exception into a warning: so what the command made and what failed are recorded in its
:class:`CommandResult`, which cli.execute returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dnnexp import run_folder
from dnnexp.config import ConfigError, validate, validate_sweep
from dnnexp.errors import RunFolderError, print_error, refuse
from dnnexp.layout import SWEEP_RECORD

if TYPE_CHECKING:
    from dnnexp.results.stats import Report


@dataclass
class CommandResult:
    """What one dnnexp command made, for its caller (the command's exit status, the Python API)."""

    run_dir: Path | None = None  # a single run's folder (cli._app)
    sweep_dir: Path | None = None  # a sweep's folder, and its report (SweepReport), in the process that started it
    report: Report | None = None
    failed: list[str] = field(default_factory=list)  # the failed jobs' folders, then the failed end-of-sweep callbacks
    claim: run_folder.Claim | None = field(default=None, repr=False)  # the run or sweep folder the command holds


_RESULT: ContextVar[CommandResult | None] = ContextVar("dnnexp_command_result", default=None)


@contextlib.contextmanager
def recording() -> Iterator[CommandResult]:
    """Record what the command run in this block makes (cli.execute); its folder is released when it ends."""
    result = CommandResult()
    token = _RESULT.set(result)
    try:
        yield result
    finally:
        if result.claim is not None:
            result.claim.release()
        _RESULT.reset(token)


def current() -> CommandResult:
    """The result of the command this process runs; outside cli.execute (a launcher's worker), one that nobody reads."""
    return _RESULT.get() or CommandResult()


def roll_back() -> None:
    """Hand the command's folder back as it was before the command: for a refusal found after Hydra wrote into it."""
    result = current()
    if result.claim is not None:
        result.claim.roll_back()
        result.claim = None


@contextlib.contextmanager
def recorded_failure(what: str) -> Iterator[None]:
    """Turn an exception in a callback into one error line and an entry in the command's failures (it then exits 1)."""
    try:
        yield
    except Exception as err:
        message = f"{what} failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        print_error(message)
        current().failed.append(message)


class ClaimOutputFolder(Callback):
    """Claims the folder a command writes into before Hydra writes there, so no run writes into another's.

    - A run: its config is checked first (a refused command creates no folder); then the
      folder is claimed (run_folder.Claim), refused if it holds a run of another config.
      A refusal found later hands the folder back as it was (cli._run calls roll_back).
    - A sweep: its folder is claimed; started again in it with a changed grid, so that some
      job's folder holds a run of another config or a live run, it is refused before any
      job starts (run_folder.check_grid). Each job's folder is then locked by the process
      that runs the job (cli._app).

    Every refusal here is SystemExit(2), since Hydra turns a callback's exceptions into warnings.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.run.dir)
        try:
            run_config = validate(config)
            run_folder.check_task_name(config.task_name)
        except (ConfigError, RunFolderError) as err:
            refuse(str(err))
        _claim(folder, _hydra_files(config), lambda: run_folder.check(folder, run_config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            validate_sweep(config)  # what the sweeper reads before any job checks its own config
            run_folder.check_task_name(config.task_name)
        except (ConfigError, RunFolderError) as err:
            refuse(str(err))
        _claim(Path(config.hydra.sweep.dir), [SWEEP_RECORD], lambda: run_folder.check_grid(config))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        run_folder.drop_empty_log(Path(config.hydra.runtime.output_dir) / f"{config.hydra.job.name}.log")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        _release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _release()


def _claim(folder: Path, rewritten: list[str], check: Callable[[], None]) -> None:
    try:
        current().claim = run_folder.Claim(folder, rewritten, check)
    except RunFolderError as err:
        refuse(str(err))


def _release() -> None:
    result = current()
    if result.claim is not None:
        result.claim.release()
        result.claim = None


def _hydra_files(config: DictConfig) -> list[str]:
    """The files Hydra writes into a run's folder before the task starts: its .hydra/ and the job's log."""
    subdir = config.hydra.output_subdir
    saved = [f"{subdir}/{name}" for name in ("config.yaml", "hydra.yaml", "overrides.yaml")] if subdir else []
    return [*saved, f"{config.hydra.job.name}.log"]


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

        with recorded_failure("the sweep report"):
            command = sweep_command(OmegaConf.to_container(config.hydra.overrides))
            result = current()
            result.sweep_dir = self.sweep_dir or Path(config.hydra.sweep.dir)
            try:
                result.report = write_sweep_report(result.sweep_dir, wide_console(), command)
            except ReportError as err:  # nothing to report (every job failed, which FailedJobs says)
                Console(stderr=True).print(f"[bold red]dnnexp: report:[/] {err}", highlight=False)


def check_typed_claims(config: DictConfig) -> None:
    """Refuse, before any job trains, a claim typed on the command line that names a variant the sweep will not run.

    A preset's own claims are not checked here: a user may narrow its grid on purpose, and the
    report then marks them "not checked".
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    typed = parser.parse_overrides([str(o) for o in config.hydra.overrides.task])
    if not any(o.key_or_group == "claims" for o in typed):
        return
    from dnnexp.results.claims import ClaimError, check_grid  # pandas: only for a command that types claims

    swept = parser.parse_overrides(run_folder.sweep_overrides(config))
    grid: dict[str, list[str]] = {}
    for override in swept:
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]
        grid[override.key_or_group] = values
    for key, choice in config.hydra.runtime.choices.items():
        grid.setdefault(key, [str(choice)])
    try:
        check_grid(config.get("claims") or [], grid)
    except ClaimError as err:
        roll_back()  # the sweep's folder, claimed just before
        refuse(str(err))  # a SystemExit, since Hydra turns a callback's exceptions into warnings


class FailedJobs(Callback):
    """At the end of a multirun, names the jobs that failed; the command then exits with status 1."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with recorded_failure("the failed-jobs check"):
            failed, n_jobs = run_folder.failed_jobs(Path(config.hydra.sweep.dir))
            current().failed[:0] = failed
            if failed:  # the report's notes above say why each one failed
                print_error(f"{len(failed)} of {n_jobs} jobs failed: {', '.join(failed)}")

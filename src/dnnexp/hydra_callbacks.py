"""Hydra callbacks: what happens around the jobs of a run or sweep. No TensorFlow.

Configured in conf/hydra/default.yaml (``hydra.callbacks``): every run and sweep holds
its folder, and every multirun ends in its comparison table and a word on the jobs that
failed, without a second command.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar, NoReturn

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from dnnexp.config import Config, ConfigError, config_hash, first_difference, hashed_config, validate, validate_sweep
from dnnexp.errors import refuse
from dnnexp.files import (BACKUP, FolderSnapshot, FolderTaken, RunFolderError, another_config, lock_held,
                          lock_run_folder, read_backup_meta, read_metrics)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
FINISHED = ("completed", "diverged")  # a run's metrics.json statuses that hold a result

# What failed in this command's callbacks. Hydra turns a callback's exception into a
# warning, so each callback records its failure here and cli.main() exits with status 1.
FAILURES: list[str] = []


def print_error(message: str) -> None:
    """One red line on stderr, the way dnnexp reports everything a user must fix."""
    Console(stderr=True).print(f"[bold red]dnnexp: error:[/] {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def recorded_failure(what: str) -> Iterator[None]:
    """Turn an exception in a callback into one error line and an entry in FAILURES (the command then exits 1)."""
    try:
        yield
    except Exception as err:
        message = f"{what} failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        print_error(message)
        FAILURES.append(message)


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

        with recorded_failure("the sweep report"):
            command = sweep_command(OmegaConf.to_container(config.hydra.overrides))
            Outcome.sweep_dir = self.sweep_dir or Path(config.hydra.sweep.dir)
            try:
                Outcome.report = write_sweep_report(Outcome.sweep_dir, wide_console(), command)
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

    swept = parser.parse_overrides(sweep_overrides(config))
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


def sweep_overrides(config: DictConfig) -> list[str]:
    """A multirun's overrides as the basic sweeper takes them: hydra.sweeper.params, then the command's (which win)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    return [*params, *(str(o) for o in config.hydra.overrides.task)]


class ClaimOutputFolder(Callback):
    """Claims the folder a command writes into before Hydra writes there, so no run writes into another's.

    - A run: its config is checked first (a refused command creates no folder); then the
      folder is locked, and refused if it holds a run of another config (see check_folder).
      A refusal found later hands the folder back as it was (cli._app calls roll_back).
    - A sweep: its folder is locked; started again in it with a changed grid, so that some
      job's folder holds a run of another config or a live run, it is refused before any
      job starts. Each job's folder is then locked by the process that runs the job (cli._app).

    The folder names carry microseconds, so two commands started in the same second already
    get different folders; the lock also refuses a run pointed (hydra.run.dir=...) at a
    folder another live run or sweep job is writing. Every refusal here is SystemExit(2),
    since Hydra turns a callback's exceptions into warnings.
    """

    # This process's run or sweep folder as it was before the command, and its lock.
    claimed: ClassVar[tuple[FolderSnapshot, IO] | None] = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.run.dir)
        try:
            run_config = validate(config)
        except ConfigError as err:
            _refuse(str(err))
        self._claim(folder, _hydra_files(config), lambda: check_folder(folder, run_config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            validate_sweep(config)  # what the sweeper reads before any job checks its own config
        except ConfigError as err:
            _refuse(str(err))
        self._claim(Path(config.hydra.sweep.dir), ["multirun.yaml"], lambda: _check_grid(config))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    @classmethod
    def roll_back(cls) -> None:
        """Leave the folder as it was before the command (gone, if the command created it), and release it.

        For a run refused after Hydra wrote into its folder (cli._app), and a sweep refused
        once the sweeper has written multirun.yaml (a typo in its grid, cli._refusing_typos).
        """
        if cls.claimed:
            cls.claimed[0].restore()
        cls._release()

    @classmethod
    def _release(cls) -> None:
        if cls.claimed:
            cls.claimed[1].close()
            cls.claimed = None

    @classmethod
    def _claim(cls, folder: Path, rewritten: list[str], check: Callable[[], None]) -> None:
        """Lock ``folder``, then ``check`` it (FolderTaken: refused); either refusal leaves it as it was."""
        snapshot = FolderSnapshot(folder, rewritten)
        try:
            lock = lock_run_folder(folder)
        except RunFolderError as err:
            _refuse(str(err), snapshot)
        try:
            check()
        except FolderTaken as err:
            lock.close()
            _refuse(str(err), snapshot)
        cls.claimed = (snapshot, lock)


def _refuse(message: str, snapshot: FolderSnapshot | None = None) -> NoReturn:
    if snapshot:
        snapshot.restore()
    refuse(message)


def _hydra_files(config: DictConfig) -> list[str]:
    """The files Hydra writes into a run's folder before the task starts: its .hydra/ and the job's log."""
    subdir = config.hydra.output_subdir
    saved = [f"{subdir}/{name}" for name in ("config.yaml", "hydra.yaml", "overrides.yaml")] if subdir else []
    return [*saved, f"{config.hydra.job.name}.log"]


def check_folder(folder: Path, config: Config) -> None:
    """Raise FolderTaken if ``folder`` holds the backup or the finished run of a config that computes something else.

    A killed run's backup carries its config and hash; a finished run's metrics.json its
    hash, and its .hydra/config.yaml the config, to name the first key that differs. The
    same config passes: it resumes, or is reported finished.
    """
    wanted = config_hash(config)
    if (folder / BACKUP).is_file():
        try:
            meta = read_backup_meta(folder / BACKUP)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return  # damaged: training refuses it, saying what to do
        if "config_hash" in meta and meta["config_hash"] != wanted:
            raise another_config(folder, first_difference(meta["config"], hashed_config(config)))
        return
    try:
        metrics = read_metrics(folder)
    except (OSError, ValueError):
        return
    if not isinstance(metrics, dict) or metrics.get("status") not in FINISHED or metrics.get("config_hash") == wanted:
        return
    recorded, here = _recorded_config(folder), hashed_config(config)
    if recorded is None:
        raise another_config(folder, f"config hash {metrics.get('config_hash')} here, {wanted} in this command")
    if recorded != here:  # equal: the same config, its hash written by another dnnexp version
        raise another_config(folder, first_difference(recorded, here))


def _recorded_config(folder: Path) -> dict[str, Any] | None:
    """The hashed config of the run that wrote ``folder`` (its .hydra/config.yaml), None if unreadable."""
    try:
        return hashed_config(validate(OmegaConf.load(folder / ".hydra" / "config.yaml")))
    except (OSError, ValueError, ConfigError, OmegaConfBaseException):
        return None


def _check_grid(config: DictConfig) -> None:
    """Raise FolderTaken if this sweep, started again in its folder, would run job k in a folder that holds
    another config's run (the grid changed, so the job numbers shifted) or a live run.

    Only the basic sweeper's jobs are known up front (its grid, in Hydra's own order);
    other sweepers (Optuna) choose jobs as they go, and each job checks its own folder.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_dir = Path(config.hydra.sweep.dir)
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER or not sweep_dir.is_dir():
        return
    if not any(path.is_dir() for path in sweep_dir.iterdir()):
        return  # a new sweep (only multirun.yaml and the lock): no job folder to check, so none of the jobs is composed
    loader = GlobalHydra.instance().config_loader()
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(sweep_overrides(config))
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    for num, job in enumerate(jobs):
        try:
            job_config = loader.load_sweep_config(config, list(job))
        except HydraException:
            return  # the sweeper reports it, as Hydra does
        with open_dict(job_config):
            job_config.hydra.job.num = num
        job_dir = sweep_dir / str(job_config.hydra.sweep.subdir)
        if not job_dir.is_dir():
            continue
        if lock_held(job_dir):
            raise FolderTaken(f"{job_dir} is in use by another dnnexp run; give this sweep its own folder")
        try:
            run_config = validate(job_config)
        except ConfigError:
            continue  # the job records why, in its folder
        check_folder(job_dir, run_config)


class FailedJobs(Callback):
    """At the end of a multirun, names the jobs that failed; cli.main() then exits with status 1."""

    failed: list[str] = []  # the failed jobs' folders

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with recorded_failure("the failed-jobs check"):
            self._name_failed(Path(config.hydra.sweep.dir))

    @staticmethod
    def _name_failed(sweep_dir: Path) -> None:
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

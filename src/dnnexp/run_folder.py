"""Who owns a run or sweep folder, and what it may hold: its lock, its snapshot, and every check of it.

A command writes into a folder only while it holds the folder's lock, and only if the
folder holds nothing of another config: a killed run of the same config resumes there, a
finished one is reported finished, anything else is refused before a byte is written
(:class:`Claim`). A refusal found after Hydra wrote its files hands the folder back as it
was (:meth:`Claim.roll_back`). The lock itself is :mod:`dnnexp.folder_lock`, which the report
reads too.
"""

from __future__ import annotations

import errno
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from yaml import YAMLError

from dnnexp.config import Config, ConfigError, config_hash, first_difference, hashed_config, validate
from dnnexp.errors import FolderTaken, RunFolderError
from dnnexp.files import read_backup_meta, read_metrics, write_atomic
from dnnexp.folder_lock import FolderLock, lock_held
from dnnexp.layout import BACKUP, LOCK, METRICS

FINISHED = ("completed", "diverged")  # a run's metrics.json statuses that hold a result
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
NAME_MAX = 255  # the longest file name, in bytes, that Linux and macOS file systems take
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or a full quota on it


def another_config(folder: Path, difference: str) -> FolderTaken:
    """The refusal of a folder that holds a run of another config; ``difference`` names the first key that differs."""
    return FolderTaken(f"{folder} holds a run of another config ({difference}); give this run its own folder, or delete {folder} to start over")


def check_task_name(name: Any) -> None:
    """Raise RunFolderError unless ``task_name`` is one folder name: outputs/<task_name>/ must stay inside outputs/."""
    text = str(name)
    if "/" in text or text in ("", ".", ".."):
        raise RunFolderError(f"task_name must be one folder name (no '/', not '.' or '..'), got {text!r}")
    if len(os.fsencode(text)) > NAME_MAX:
        raise RunFolderError(f"task_name must be one folder name of at most {NAME_MAX} bytes, got {len(os.fsencode(text))} bytes")


def unwritable(folder: Path, err: OSError) -> RunFolderError:
    """The refusal of a folder the file system will not let a run write into, naming the path and the reason."""
    blocking = Path(folder)  # os.path's probes answer False where Path's raise (a name too long)
    while not os.path.lexists(blocking) and blocking != blocking.parent:
        blocking = blocking.parent
    if isinstance(err, (FileExistsError, NotADirectoryError)) and not os.path.isdir(blocking):
        return RunFolderError(f"cannot use {folder} as a run folder: {blocking} is a file")
    return RunFolderError(f"cannot write into {err.filename or folder}: {err.strerror or err}")


class Snapshot:
    """What a folder held before a command started writing into it, so a refused command can leave it as it was.

    Before a run's task starts, Hydra creates its folder, writes ``.hydra/`` and opens its
    log; a refusal found after that (a split larger than the data, a transfer source of
    another shape) removes the folder if it is new, else deletes what was added and puts
    back the bytes of the files named in ``rewritten``, the ones Hydra writes over.
    """

    def __init__(self, folder: Path, rewritten: list[str]):
        self.folder = Path(folder).absolute()
        self.existed = self.folder.exists()
        self.new_root = self.folder  # the outermost folder that a restore deletes (outputs/, if it is new too)
        while not self.new_root.parent.exists():
            self.new_root = self.new_root.parent
        self.paths = set(self.folder.rglob("*")) if self.existed else set()
        self.saved = {path: path.read_bytes() for path in (self.folder / name for name in rewritten) if path.is_file()}

    def restore(self) -> None:
        if not self.existed:
            shutil.rmtree(self.new_root, ignore_errors=True)
            return
        for path in sorted(set(self.folder.rglob("*")) - self.paths, reverse=True):  # files before their folders
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        for path, data in self.saved.items():
            if not path.is_file() or path.read_bytes() != data:
                write_atomic(path, data)


class Claim:
    """A command's hold on its run or sweep folder: the lock, and the folder as it was before the command."""

    def __init__(self, folder: Path, rewritten: list[str], check: Callable[[], None] = lambda: None):
        """Lock ``folder``, then ``check`` it; a refusal (RunFolderError, or a folder the file system refuses) leaves it as it was."""
        self.handle: FolderLock | None = None
        try:
            self.snapshot = Snapshot(folder, rewritten)
        except OSError as err:
            raise unwritable(folder, err) from None
        try:
            self.handle = FolderLock(folder)
            check()
        except RunFolderError:
            self.roll_back()
            raise
        except OSError as err:
            self.roll_back()
            raise unwritable(folder, err) from None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.release()
            self.handle = None

    def roll_back(self) -> None:
        """Leave the folder as it was before the command (gone, if the command created it), and release it."""
        self.snapshot.restore()
        self.release()


def check(folder: Path, config: Config) -> None:
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
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        metrics = None  # damaged: the run's config is known from its .hydra/config.yaml alone
    if isinstance(metrics, dict) and (metrics.get("status") not in FINISHED or metrics.get("config_hash") == wanted):
        return
    recorded, here = _recorded_config(folder), hashed_config(config)
    if recorded is None and not isinstance(metrics, dict):
        held = ", ".join(sorted(p.name for p in folder.iterdir() if p.name != LOCK))
        raise FolderTaken(f"{folder} holds {held} but no readable record of its config ({METRICS} and .hydra/config.yaml "
                          f"cannot be read); give this run its own folder, or delete {folder} to start over")
    if recorded is None:
        raise another_config(folder, f"config hash {metrics.get('config_hash')} here, {wanted} in this command")
    if recorded != here:  # equal: the same config, its hash written by another dnnexp version
        raise another_config(folder, first_difference(recorded, here))


def _recorded_config(folder: Path) -> dict[str, Any] | None:
    """The hashed config of the run that wrote ``folder`` (its .hydra/config.yaml), None if unreadable."""
    try:
        return hashed_config(validate(OmegaConf.load(folder / ".hydra" / "config.yaml")))
    except (OSError, ValueError, ConfigError, OmegaConfBaseException, YAMLError):
        return None


def finished_run(folder: Path, config: Config) -> dict[str, Any] | None:
    """The metrics of the run of ``config`` that ``folder`` already holds, finished; else None.

    So a sweep started again in its folder to resume its killed job does not train the
    jobs that had finished.
    """
    try:
        metrics = read_metrics(folder)
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("status") not in FINISHED or metrics.get("config_hash") != config_hash(config):
        return None
    Console(stderr=True).print(f"{folder} already holds this run, finished: not training it again", highlight=False, soft_wrap=True)
    return metrics


def sweep_overrides(config: DictConfig) -> list[str]:
    """A multirun's overrides as the basic sweeper takes them: hydra.sweeper.params, then the command's (which win)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    return [*params, *(str(o) for o in config.hydra.overrides.task)]


def check_grid(config: DictConfig) -> None:
    """Raise FolderTaken if this sweep, started again in its folder, would run job k in a folder that holds
    another config's run (the grid changed, so the job numbers shifted) or a live run.

    Only the basic sweeper's jobs are known up front (its grid, in Hydra's own order);
    other sweepers (Optuna) choose jobs as they go, and each job checks its own folder.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

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
        check(job_dir, run_config)


def drop_empty_log(path: Path) -> None:
    """Remove a job's log file if nothing was logged into it (Hydra creates one for every job)."""
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except FileNotFoundError:
        pass


def job_failed(job_dir: Path) -> bool:
    """A job with no usable result: failed, or no readable metrics.json (a diverged run is a result)."""
    try:
        metrics = read_metrics(job_dir)
    except (OSError, ValueError):
        return True
    return not isinstance(metrics, dict) or metrics.get("status") == "failed"


def failed_jobs(sweep_dir: Path) -> tuple[list[str], int]:
    """The folders of the sweep's jobs that failed, in job order, and the number of jobs."""
    jobs = sorted((d for d in Path(sweep_dir).iterdir() if (d / ".hydra").is_dir()), key=lambda d: (len(d.name), d.name))
    return [str(job) for job in jobs if job_failed(job)], len(jobs)

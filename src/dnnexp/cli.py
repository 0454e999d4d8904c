"""Hydra entry points. Thin: validate the config, then hand over to train.py.

TensorFlow is imported only once a run is about to train, so ``--help``,
``--cfg job`` and config errors answer in about a second.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from dnnexp import backend_setup, run_folder, usage
from dnnexp.config import Config
from dnnexp.errors import DnnexpError, FolderTaken, Refusal, RunFolderError, print_error, refuse
from dnnexp.files import write_metrics
from dnnexp.folder_lock import FolderLock
from dnnexp.hydra_callbacks import CommandResult, current, recording, roll_back
from dnnexp.layout import BACKUP
from dnnexp.modes import run_here
from dnnexp.typos import composition_error


def config_dir() -> str:
    """conf/ inside an installed wheel, else conf/ at the top of the source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"dnnexp's conf/ folder is missing (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _app(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        current().run_dir = run_dir
        return _run(cfg, run_dir, multirun=False)  # ClaimOutputFolder holds its folder
    try:  # each job's folder, held by the process that runs the job (a joblib worker too)
        lock = FolderLock(run_dir)
    except FolderTaken as err:
        print_error(str(err))
        return float("nan")
    with lock:
        return _run(cfg, run_dir, multirun=True)


def _run(cfg: DictConfig, run_dir: Path, multirun: bool) -> float | None:
    from dnnexp.config import ConfigError, validate
    from dnnexp.data import DataError  # numpy only, no TensorFlow

    start = time.perf_counter()
    try:
        config = validate(cfg)
        if multirun:  # a run's folder was checked before Hydra wrote into it; Optuna's trials are known only now
            run_folder.check(run_dir, config)
        metrics = run_folder.finished_run(run_dir, config) if config.mode == "train" else None
        if metrics is None:
            metrics = _run_mode(config, run_dir)
    except (ConfigError, DataError, RunFolderError) as err:
        if not multirun:
            roll_back()  # refused after Hydra wrote into the folder: leave it as it was
            refuse(str(err))
        print_error(str(err))
        # In a sweep, one bad job is recorded and the others go on; another run's folder is left alone.
        if not isinstance(err, FolderTaken):
            write_metrics(run_dir, {"status": "failed", "error": str(err)})
        return float("nan")
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM during training (train.Terminated)
        what = getattr(err, "what", "interrupted")
        print_error(f"{what}; to continue after the last finished epoch, run the same command with {_folder_key(run_dir, multirun)}")
        sys.exit(getattr(err, "exit_code", 130))  # 130: the shell's code for Ctrl-C; in a sweep it stops the remaining jobs too
    except OSError as err:
        if err.errno not in run_folder.NO_SPACE:
            return _crashed(err, run_dir, multirun)
        message = _no_space(err, run_dir, multirun)  # no record written: the disk is full, and the backup says enough
        if not multirun:
            refuse(message, exit_code=1)
        print_error(message)
        return float("nan")
    except Exception as err:  # a bug, or a fault no check foresaw: still leave a record of it
        return _crashed(err, run_dir, multirun)
    if config.mode != "train":
        return None  # the tools print their own one-line result
    from dnnexp.results.render import print_job_line, print_run_summary

    console = Console(quiet=not config.trainer.verbose)
    if multirun:  # one line per job; the table follows when the sweep ends
        hydra_cfg = HydraConfig.get()
        print_job_line(hydra_cfg.job.num, list(hydra_cfg.overrides.task), metrics, config.optimized_metric,
                       time.perf_counter() - start, console)
    else:
        print_run_summary(metrics, run_dir, console)
    return metrics.get(config.optimized_metric)


def _crashed(err: Exception, run_dir: Path, multirun: bool) -> float:
    """Record a fault no check foresaw in the run's metrics.json; a single run re-raises it, so Hydra prints the traceback."""
    message = f"{type(err).__name__}: {err}"
    print_error(message)
    write_metrics(run_dir, {"status": "failed", "error": message, "traceback": traceback.format_exc()})
    if not multirun:
        raise err
    return float("nan")


def _no_space(err: OSError, run_dir: Path, multirun: bool) -> str:
    """What a run cut off by a full disk says: the file, the reason, and how to go on once there is room."""
    backup = run_dir / BACKUP
    kept = f"; {backup} keeps the finished epochs: " if backup.is_file() else ": "
    again = "continue" if backup.is_file() else "run it again"
    return (f"cannot write {err.filename or run_dir}: {err.strerror}{kept}free some space, then run the same command "
            f"with {_folder_key(run_dir, multirun)} to {again}")


def _folder_key(run_dir: Path, multirun: bool) -> str:
    """The override that points the same command at this run's folder again."""
    return f"hydra.sweep.dir={HydraConfig.get().sweep.dir}" if multirun else f"hydra.run.dir={run_dir}"


def _run_mode(config: Config, run_dir: Path) -> dict[str, Any]:
    """Run the config's mode on its backend: here, or in a child process if this one's Keras runs on another."""
    from dnnexp.data import check_files

    check_files(config.dataset)  # a broken data file is answered before TensorFlow loads
    if backend_setup.loaded() not in (None, config.trainer.backend):
        from dnnexp.child_process import run_in_child

        return run_in_child(config, run_dir)
    return run_here(config, run_dir)


def execute(args: Sequence[str], prog: str = "dnnexp") -> CommandResult:
    """Run ``dnnexp ARGS`` in this process, as the shell runs it; return what it made and what failed.

    The command (main) and the Python API (dnnexp.run, dnnexp.sweep) both come through
    here, so both get Hydra's own parsing, composition, callbacks, launchers and sweepers,
    and the same checks. Raises DnnexpError for what the user must fix.
    """
    saved_argv = sys.argv
    sys.argv = [prog, *args]  # Hydra's entry point takes no argument list: it parses sys.argv
    try:
        with recording() as result, _typos_answered():
            _app()
    except Refusal as refusal:
        raise DnnexpError(refusal.message, refusal.code) from None
    finally:
        sys.argv = saved_argv
    return result


def main() -> None:
    if usage.asked(sys.argv[1:]):  # Hydra's --help would list every plugin's config groups first (dnnexp.usage)
        print(usage.text(config_dir()))
        return
    # As in a process that trains (keras_import.py): skip the shutdown's full garbage collections
    # over Hydra's, pandas' and matplotlib's objects, whose memory the OS takes back anyway
    # (benchmarks/README.md).
    atexit.register(gc.freeze)
    try:
        result = execute(sys.argv[1:], prog=sys.argv[0])
    except DnnexpError as err:
        print_error(str(err))
        sys.exit(err.exit_code)
    if result.failed:
        sys.exit(1)


@contextlib.contextmanager
def _typos_answered() -> Iterator[None]:
    """While Hydra runs: an unknown key or choice is answered in one line (dnnexp.typos), exit 2 (DnnexpError in Python).

    Hydra composes the config inside ``hydra._internal.utils.run_and_report``, which prints
    whatever is raised in several lines and exits 1, and offers no hook to change that.
    Wrapping the function it is handed sees exactly the exception Hydra raised, wherever it
    composes (the run, a sweep's jobs, a preset's defaults, a --config-dir), and costs nothing
    when the command is fine. The alternatives are worse: checking the overrides before
    Hydra runs would repeat its parsing of the command line, its search path, its sweep
    syntax and the presets' sweeper params, and compose once more on every command; and
    HYDRA_FULL_ERROR=1 would make every error raise unformatted, a run's own included, and
    be inherited by the launchers' processes. ``run_and_report`` is a private name of Hydra
    1.3 (pinned in pyproject.toml): if a release drops it this fails loudly, and
    tests/test_bad_input.py checks the answers.
    """
    original = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        return original(lambda: _refusing_typos(func))

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _refusing_typos(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except (ConfigCompositionException, OverrideParseException) as err:
        message = composition_error(err)
        if message is None:
            raise  # not a typo (e.g. "+key=" for a key that exists): Hydra's own message
        roll_back()  # a sweep's typo is found once its folder exists
        refuse(message)


if __name__ == "__main__":
    main()

"""A joblib sweep's workers load Keras, its backend and the dataset while the main process prepares the jobs.

Before Hydra's joblib launcher hands out the first job, the main process composes every
job's config once to check it (the basic sweeper's ``validate_batch_is_legal``): about 2 s
for 8 jobs on this project's 2-core machine, during which no worker exists yet. Each worker
then starts, imports Hydra and dnnexp, then Keras and its backend, and loads the dataset
before its first job trains: 3-4 s on JAX, more on TensorFlow. :class:`WarmWorkers` starts
the workers when the sweep starts and has each do that work at once, so it overlaps the
main process's checks.

joblib keeps one reusable pool of loky workers per process, handed to every ``Parallel``
call with the same settings; the warm-up is a ``Parallel`` call with exactly the settings
the launcher's own call will have, so the launcher's jobs run in the warmed workers. None
of Hydra, joblib or the launcher offers this, which is why it is written here.

In dnnexp's command (not the Python API, whose process is the user's), the workers are
instead forks of a fork server (multiprocessing's ``forkserver``) that imported dnnexp,
Keras and its backend once (dnnexp.preload): the import runs once instead of once per
worker, beside the main process's checks, and a worker starts ready. The server holds
the jobs' variables (the backend, its threads, joblib's thread limits), which a forked
worker inherits, since loky passes its own variables only to the processes it spawns
itself. The ``dnnexp`` command starts the server from a command line that asks for a
joblib sweep, before Hydra composes the config (dnnexp.server): it imports what needs
no variables until the sweep starts and sends them.

A worker is warmed for the sweep's base config (its backend and thread count, its dataset).
A job that needs another backend still runs correctly, in a child process (cli._run_mode),
so no worker is warmed when ``trainer.backend`` itself is swept.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dnnexp import backends
from dnnexp.config import Config
from dnnexp.server import EarlyServer, start_fork_server

JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
# Swept keys that can change a job's backend or its dataset from the base config's.
UNWARMABLE = {"trainer.backend", "trainer", "experiment"}


def warm_up(variables: dict[str, str], config: Config) -> int:
    """In a worker: settle the backend, import what a job imports, start the backend's runtime as a job
    of ``config`` would (its threads, the compilation cache, the checks of its Keras arguments), load the
    dataset; return the worker's pid.

    Never raises: what fails here fails again in the first job, which reports it.
    """
    try:
        if backends.loaded() is None:
            os.environ.update(variables)
        from dnnexp import cli, data  # noqa: F401  (Hydra's job machinery)
        from dnnexp.engines import engine  # Keras and its backend
        from dnnexp.train import check_keras_arguments

        engine.configure(config.trainer)
        check_keras_arguments(config)  # its first operations compile once per process
        data.load(config.dataset)  # data.load_raw keeps it for the worker's jobs
    except Exception:  # noqa: BLE001, S110
        pass
    return os.getpid()


class WarmWorkers(Callback):
    """Starts a joblib sweep's workers, warmed for its jobs, as soon as the sweep starts."""

    # True in the dnnexp command's own process (cli.main), which ends with its sweep, so joblib's
    # process-wide start method may be set for the sweep; a Python API process is the user's.
    fork_from_server: ClassVar[bool] = False
    pending: ClassVar[Iterator[int] | None] = None  # the warm-up's results, until the sweep ends
    report_loader: ClassVar[threading.Thread | None] = None
    checks: ClassVar[ChecksDone | None] = None  # set once the sweeper has checked the jobs' configs

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        plan = warm_plan(config)
        if plan is not None:
            parallel_kwargs, n_workers, variables, base = plan
            if WarmWorkers.fork_from_server and "forkserver" in multiprocessing.get_all_start_methods():
                # The workers start when the launcher's Parallel call first needs them, ready.
                variables = {**variables, **worker_limits(n_workers)}
                forks_for_joblib()
                EarlyServer.send(variables)
                # Nothing if the early server runs; if it died (killed, say), multiprocessing would start
                # another one when the launcher first asks it for a worker, without the jobs' variables.
                start_fork_server(variables)
            else:
                from joblib import Parallel, delayed

                # A generator: the call returns once the tasks are handed to the workers.
                WarmWorkers.pending = Parallel(**parallel_kwargs, return_as="generator_unordered")(
                    delayed(warm_up)(variables, base) for _ in range(n_workers)
                )
            # This process waits while the workers run the jobs: it loads what the report will need meanwhile,
            # once it has checked the jobs' configs (the two would share its interpreter's lock).
            WarmWorkers.checks = ChecksDone()
            WarmWorkers.report_loader = threading.Thread(target=preload_report, args=(WarmWorkers.checks.event,),
                                                         name="dnnexp-preload-report", daemon=True)
            WarmWorkers.report_loader.start()
        else:
            EarlyServer.send(None)  # not a sweep the server can serve

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if WarmWorkers.pending is not None:
            for _ in WarmWorkers.pending:  # long finished: this only collects the warm-up's results
                pass
            WarmWorkers.pending = None
        WarmWorkers.release_checks()
        EarlyServer.clean_up()
        if WarmWorkers.report_loader is not None:
            WarmWorkers.report_loader.join()
            WarmWorkers.report_loader = None

    @classmethod
    def release_checks(cls) -> None:
        if cls.checks is not None:
            cls.checks.release()
            cls.checks = None

    @classmethod
    def stop(cls) -> None:
        """A sweep that ended early (refused, or a fault): stop the warm-up, and the workers with it."""
        EarlyServer.send(None)  # a server that still waits for its variables exits, and removes their folder
        cls.release_checks()
        if cls.pending is not None:
            with warnings.catch_warnings():  # joblib's note that the warm-up's results went unused
                warnings.simplefilter("ignore")
                cls.pending.close()  # joblib stops the workers of an unfinished generator
            cls.pending = None


def forks_for_joblib() -> None:
    """Make the executors joblib creates from now on fork their workers from the fork server (dnnexp.server)."""
    from joblib.externals.loky.backend.context import set_start_method

    set_start_method("forkserver", force=True)  # loky's default for the executors it creates


def worker_limits(n_workers: int) -> dict[str, str]:
    """The thread limits joblib gives the workers it spawns (OMP_NUM_THREADS and its kin: cores / n_workers)."""
    from joblib._parallel_backends import LokyBackend

    return LokyBackend()._prepare_worker_env(n_jobs=n_workers)  # noqa: SLF001  (joblib offers no public form)


def preload_report(checked: threading.Event) -> None:
    """Import what writing the sweep's report imports (pandas, SciPy, matplotlib's Agg canvas), once ``checked`` is set.

    Imports and the sweeper's checks both run Python in this process, so they would take turns on its
    interpreter lock, and the checks, which the first jobs wait for, would take twice as long. So this
    waits for them (:class:`ChecksDone`).
    """
    checked.wait()
    try:
        from dnnexp.results.sweep import preload

        preload()
    except Exception:  # noqa: BLE001, S110  (the report imports them again, and says what fails)
        pass


class ChecksDone:
    """An event set when the sweeper has composed its first batch of jobs' configs to check them.

    Hydra says nothing between its sweeper's checks (``Sweeper.validate_batch_is_legal``, which
    the basic sweeper calls before it launches a batch) and the launcher's start, so the
    method is wrapped until its next call. :meth:`release` unwraps it and sets the event: a
    sweeper that checks its jobs another way (Optuna's) then sets it when the sweep ends.
    """

    def __init__(self):
        from hydra.plugins.sweeper import Sweeper

        self.event = threading.Event()
        # Hydra's own method, also when an earlier sweep in this process left its wrapper unused.
        self.original = original = inspect.unwrap(Sweeper.validate_batch_is_legal)

        @functools.wraps(original)
        def validate_then_signal(sweeper, batch):
            Sweeper.validate_batch_is_legal = original
            try:
                return original(sweeper, batch)
            finally:
                self.event.set()

        Sweeper.validate_batch_is_legal = validate_then_signal

    def release(self) -> None:
        from hydra.plugins.sweeper import Sweeper

        Sweeper.validate_batch_is_legal = self.original
        self.event.set()


def warm_plan(config: DictConfig) -> tuple[dict[str, Any], int, dict[str, str], Config] | None:
    """What to warm for this multirun config: the launcher's Parallel settings, the worker count, the
    variables that settle the backend, and the base config; None if it is not a joblib sweep whose
    jobs share a backend."""
    launcher = config.hydra.launcher
    if launcher.get("_target_") != JOBLIB_LAUNCHER or swept_keys(config) & UNWARMABLE:
        return None
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    from dnnexp.config import ConfigError, validate

    try:
        base = validate(config)
    except ConfigError:
        return None  # each job says what is wrong with its own config
    # As the launcher builds its Parallel call (hydra_joblib_launcher._core.launch), so joblib reuses the pool.
    parallel_kwargs = {key: value for key, value in OmegaConf.to_container(launcher, resolve=True).items() if key != "_target_"}
    parallel_kwargs["backend"] = "loky"
    process_joblib_cfg(parallel_kwargs)
    n_workers = backends.joblib_jobs(parallel_kwargs.get("n_jobs"), backends.cores())
    if n_workers < 2:
        return None  # joblib runs the jobs in this process
    job_cores = backends.launcher_cores(launcher)
    # The job's cores go in the variables too, so the warm-up sizes the threads as the worker's jobs will.
    variables = {**backends.environment(base.trainer, job_cores), backends.JOB_CORES_VARIABLE: str(job_cores)}
    return parallel_kwargs, n_workers, variables, base


def swept_keys(config: DictConfig) -> set[str]:
    """The keys and groups the sweep gives several values: on the command line and in hydra.sweeper.params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dnnexp.hydra_callbacks import sweep_overrides

    overrides = OverridesParser.create().parse_overrides(sweep_overrides(config))
    return {o.key_or_group for o in overrides if o.is_sweep_override()}

"""A joblib sweep's workers are started and warmed (Keras, its backend, the dataset) when the sweep starts,
and the launcher's jobs then run in those same workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from conftest import compose_config
from omegaconf import OmegaConf, open_dict

from dnnexp import backends
from dnnexp import warm
from dnnexp.warm import ChecksDone, WarmWorkers, warm_plan

JOBLIB = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


def sweep_config(*overrides: str, swept: tuple[str, ...] = ()):
    """The config a multirun's callbacks get: ``swept`` are the command's sweep overrides (Hydra's compose refuses them)."""
    cfg = compose_config(*overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = [*overrides, *swept]
    return cfg


def test_only_a_joblib_sweep_whose_jobs_share_a_backend_is_warmed():
    assert warm_plan(sweep_config(swept=("trainer.seed=1,2",))) is None  # the basic launcher: jobs run here
    assert warm_plan(sweep_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=1")) is None  # joblib runs it here
    assert warm_plan(sweep_config(*JOBLIB, swept=("trainer.backend=tensorflow,jax",))) is None
    kwargs, n_workers, variables, base = warm_plan(sweep_config(*JOBLIB, "trainer.backend=jax", swept=("trainer.seed=1,2",)))
    assert (kwargs["n_jobs"], kwargs["backend"], n_workers, base.dataset.name) == (2, "loky", 2, "mnist_5k")
    job_cores = max(1, backends.cores() // 2)
    threads = backends.thread_count("auto", job_cores)
    assert variables["KERAS_BACKEND"] == "jax" and variables[backends.JOB_CORES_VARIABLE] == str(job_cores)
    assert f"intra_op_parallelism_threads={threads}" in variables["XLA_FLAGS"]


def test_warm_up_settings_are_the_launchers_own(monkeypatch, tmp_path):
    """joblib hands its pool to a later Parallel call only if the settings are equal: those of the launcher's call."""
    from hydra_plugins.hydra_joblib_launcher import _core
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    cfg = sweep_config(*JOBLIB, f"hydra.sweep.dir={tmp_path}", "hydra.launcher.max_nbytes=1M")
    seen = []

    class Recorder:
        def __init__(self, **kwargs):
            seen.append(kwargs)

        def __call__(self, tasks):
            return []  # no jobs: the settings are what is compared

    monkeypatch.setattr(_core, "Parallel", Recorder)
    monkeypatch.setattr(_core, "configure_log", lambda *args: None)
    launcher = JoblibLauncher(**{k: v for k, v in OmegaConf.to_container(cfg.hydra.launcher).items() if k != "_target_"})
    launcher.setup(hydra_context=object(), task_function=lambda c: None, config=cfg)
    _core.launch(launcher, [], 0)
    assert warm_plan(cfg)[0] == seen[0]


def _probe() -> tuple[int, bool, str | None]:
    return os.getpid(), "keras" in sys.modules, os.environ.get("KERAS_BACKEND")


def test_the_launchers_jobs_run_in_the_warmed_workers_with_keras_loaded():
    from joblib import Parallel, delayed

    cfg = sweep_config(*JOBLIB, "trainer.backend=jax", swept=("trainer.seed=1,2",))
    kwargs = warm_plan(cfg)[0]
    warm = WarmWorkers()
    warm.on_multirun_start(cfg)
    jobs = Parallel(**kwargs)(delayed(_probe)() for _ in range(4))  # queued behind the warm-up
    warm.on_multirun_end(cfg)
    assert len(set(WarmWorkers.pids)) == 2
    assert {pid for pid, _, _ in jobs} <= set(WarmWorkers.pids)
    assert all(loaded and backend == "jax" for _, loaded, backend in jobs)


def test_a_sweep_that_ends_early_stops_its_warming_workers():
    from joblib import Parallel, delayed

    cfg = sweep_config(*JOBLIB, swept=("trainer.seed=1,2",))
    WarmWorkers().on_multirun_start(cfg)
    pids = Parallel(**warm_plan(cfg)[0])(delayed(os.getpid)() for _ in range(2))  # the same pool's workers
    WarmWorkers.stop()
    assert WarmWorkers.pending is None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)



class RecordingLoader:
    def __init__(self, events: list[str]):
        self.events = events

    def load_sweep_config(self, master_config, sweep_overrides):
        time.sleep(0.1)  # a compose takes 0.2-0.4 s
        self.events.append(f"checked {sweep_overrides[0]}")


def test_the_report_loads_its_modules_after_the_sweeper_has_checked_the_jobs(monkeypatch):
    """The two would take turns on the main process's interpreter lock, delaying the first jobs."""
    from hydra.plugins.sweeper import Sweeper

    class CheckingSweeper(Sweeper):
        def setup(self, **kwargs):
            pass

        def sweep(self, arguments):
            pass

    events: list[str] = []
    sweeper = CheckingSweeper()
    sweeper.hydra_context, sweeper.config_loader, sweeper.config = None, RecordingLoader(events), {}
    monkeypatch.setattr("dnnexp.results.sweep.preload", lambda: events.append("report modules"))
    original = Sweeper.validate_batch_is_legal
    checks = ChecksDone()
    loader = threading.Thread(target=warm.preload_report, args=(checks.event,))
    loader.start()
    time.sleep(0.3)
    assert events == []  # waiting for the checks
    sweeper.validate_batch_is_legal([["trainer.seed=1"], ["trainer.seed=2"]])
    loader.join(10)
    assert events == ["checked trainer.seed=1", "checked trainer.seed=2", "report modules"]
    assert Sweeper.validate_batch_is_legal is original  # wrapped for one call only


def test_a_sweep_that_never_checks_its_jobs_releases_the_report_when_it_ends():
    from hydra.plugins.sweeper import Sweeper

    original = Sweeper.validate_batch_is_legal
    checks = ChecksDone()
    assert not checks.event.is_set() and Sweeper.validate_batch_is_legal is not original
    checks.release()
    assert checks.event.is_set() and Sweeper.validate_batch_is_legal is original


def test_a_wrapper_left_by_an_earlier_sweep_is_not_kept_by_the_next():
    """A Python session whose sweep ended before its checks (the Optuna sweeper's never come) gets Hydra's own method back."""
    from hydra.plugins.sweeper import Sweeper

    original = Sweeper.validate_batch_is_legal
    ChecksDone()  # never released
    ChecksDone().release()
    assert Sweeper.validate_batch_is_legal is original

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed worker that its parent has not reaped yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


FORKED_WORKERS = """
import json, os, sys
from hydra import compose, initialize_config_dir
from joblib import Parallel, delayed
from omegaconf import open_dict
from dnnexp.cli import config_dir
from dnnexp import warm
from dnnexp.warm import ChecksDone, WarmWorkers, warm_plan

def probe():
    return os.getppid(), "keras" in sys.modules, {name: os.environ.get(name) for name in ("KERAS_BACKEND", "DNNEXP_JOB_CORES", "OMP_NUM_THREADS")}

with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
    overrides = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.backend=jax"]
    cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
with open_dict(cfg):
    cfg.hydra.overrides.task = [*overrides, "trainer.seed=1,2"]
WarmWorkers.fork_from_server = True  # as in dnnexp's command (cli.main)
WarmWorkers().on_multirun_start(cfg)
jobs = Parallel(**warm_plan(cfg)[0])(delayed(probe)() for _ in range(4))
print(json.dumps({"main": os.getpid(), "main_backend": os.environ.get("KERAS_BACKEND"), "jobs": jobs}))
"""


def test_the_commands_workers_are_forks_of_a_server_that_loaded_keras(tmp_path):
    """In dnnexp's command the workers start with Keras on the sweep's backend already imported, and the jobs' variables."""
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", FORKED_WORKERS], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["main_backend"] is None  # the main process's own environment is left as it was
    job_cores = str(max(1, backends.cores() // 2))
    for parent, keras_loaded, variables in result["jobs"]:
        assert parent != result["main"]  # forked by the server, not spawned by the main process
        assert keras_loaded  # before the job imported anything
        assert variables == {"KERAS_BACKEND": "jax", "DNNEXP_JOB_CORES": job_cores, "OMP_NUM_THREADS": job_cores}

"""A joblib sweep's workers are started and warmed (Keras, its backend, the dataset) when the sweep starts,
and the launcher's jobs then run in those same workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
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
    warmed = list(WarmWorkers.pending)  # the pids of the workers the warm-up ran in
    warm.on_multirun_end(cfg)
    assert WarmWorkers.pending is None
    assert len(set(warmed)) == 2
    assert {pid for pid, _, _ in jobs} <= set(warmed)
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
from dnnexp import server, warm
from dnnexp.warm import ChecksDone, WarmWorkers, warm_plan

def probe():
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return os.getppid(), "keras" in sys.modules, {name: os.environ.get(name) for name in ("KERAS_BACKEND", "DNNEXP_JOB_CORES", "OMP_NUM_THREADS")}, blas

if sys.argv[1] in ("early", "early, then killed"):  # as cli.main does, before Hydra composes anything
    server.EarlyServer.start(["-m", "trainer.seed=1,2", "hydra/launcher=joblib"])
channel = server.EarlyServer.channel
if sys.argv[1] == "early, then killed":  # say, by the kernel's OOM killer; multiprocessing reaps it
    import multiprocessing.forkserver, signal
    os.kill(multiprocessing.forkserver._forkserver._forkserver_pid, signal.SIGKILL)
with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
    overrides = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.backend=jax"]
    cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
with open_dict(cfg):
    cfg.hydra.overrides.task = [*overrides, "trainer.seed=1,2"]
WarmWorkers.fork_from_server = True  # as in dnnexp's command (cli.main)
WarmWorkers().on_multirun_start(cfg)
jobs = Parallel(**warm_plan(cfg)[0])(delayed(probe)() for _ in range(4))
WarmWorkers().on_multirun_end(cfg)
print(json.dumps({"main": os.getpid(), "main_backend": os.environ.get("KERAS_BACKEND"), "jobs": jobs,
                  "channel_left": channel is not None and channel.parent.exists()}))
"""


THREAD_VARIABLES = ("KERAS_BACKEND", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.mark.parametrize("when", ["sweep start", "early", "early, then killed"])
def test_the_commands_workers_are_forks_of_a_server_that_loaded_keras(tmp_path, when):
    """In dnnexp's command the workers start with Keras on the sweep's backend already imported, the jobs' variables,
    and NumPy's threads as joblib limits them: also from a server started before the config existed, which
    imported NumPy before it knew the limits (server.EarlyServer), and from the one that replaces it if it died."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", FORKED_WORKERS, when], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["main_backend"] is None  # the main process's own environment is left as it was
    job_cores = max(1, backends.cores() // 2)
    for parent, keras_loaded, variables, blas_threads in result["jobs"]:
        assert parent != result["main"]  # forked by the server, not spawned by the main process
        assert keras_loaded  # before the job imported anything
        assert variables == {"KERAS_BACKEND": "jax", "DNNEXP_JOB_CORES": str(job_cores), "OMP_NUM_THREADS": str(job_cores)}
        assert blas_threads and set(blas_threads) == {job_cores}
    assert not result["channel_left"]


UNSERVED_SWEEP = """
import json, multiprocessing.forkserver, os, sys
from joblib.externals.loky.backend.context import get_start_method
from conftest import compose_config
from omegaconf import open_dict
from dnnexp import server, warm

warm.WarmWorkers.fork_from_server = True
server.EarlyServer.start(["-m", "hydra/launcher=joblib", "trainer.backend=tensorflow,jax"])
channel = server.EarlyServer.channel
server = multiprocessing.forkserver._forkserver._forkserver_pid
cfg = compose_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", return_hydra_config=True)
with open_dict(cfg):
    cfg.hydra.overrides.task = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.backend=tensorflow,jax"]
warm.WarmWorkers().on_multirun_start(cfg)  # jobs on two backends: no worker is warmed
_, status = os.waitpid(server, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "start_method": get_start_method(), "channel_left": channel.parent.exists()}))
"""


def test_a_server_started_for_a_sweep_it_cannot_serve_exits_and_joblib_starts_its_own_workers(tmp_path):
    """The command line asked for a joblib sweep, but its jobs need two backends: the early server exits, leaving nothing."""
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, "-c", UNSERVED_SWEEP], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"exit": 0, "start_method": None, "channel_left": False}


def _processes_with(marker: str) -> list[int]:
    found = []
    for environ in os.listdir("/proc"):
        try:
            with open(f"/proc/{environ}/environ", "rb") as variables:
                if marker.encode() in variables.read():
                    found.append(int(environ))
        except (OSError, ValueError):
            continue
    return found


def test_a_refused_joblib_sweep_leaves_no_server_behind(tmp_path):
    """The server starts from the command line, before Hydra finds the typo: the refusal stops it and removes its file."""
    from conftest import run_cli

    marker = f"DNNEXP_TEST_MARK=early-server-{os.getpid()}-{time.time_ns()}"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_cli("-m", "trainer.seed=1,2", "hydra/launcher=joblib", "trainer.epocs=3", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path, env={"TMPDIR": str(scratch), marker.split("=")[0]: marker.split("=")[1]})
    assert result.returncode == 2
    assert "trainer.epocs" in result.stderr and "Traceback" not in result.stderr
    deadline = time.monotonic() + 60
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert list(scratch.iterdir()) == [] and not (tmp_path / "sweep").exists()


def test_the_command_can_start_the_server_before_it_imports_hydra_or_joblib():
    """dnnexp.server is all the `dnnexp` command imports before it starts a joblib sweep's server."""
    probe = "import sys, dnnexp.server; print(sorted(m for m in ('hydra', 'joblib', 'omegaconf', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]

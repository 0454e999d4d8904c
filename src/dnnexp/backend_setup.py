"""Which Keras backend a process trains with, and how many threads it gets: settled before Keras loads.

Keras reads its backend (``KERAS_BACKEND``) when it is first imported and cannot change it
afterwards, and XLA sizes its CPU thread pool when JAX's runtime starts. So the entry point
calls :func:`choose` once the config is valid and before ``dnnexp.keras_import`` is imported.
Neither TensorFlow nor JAX is imported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from hydra.core.hydra_config import HydraConfig

from dnnexp.config import TrainerConfig

# Set by a dnnexp process for the child it trains a job in (child_process.py): the cores the parent's
# launcher gives the job, which the child's own Hydra-free run cannot see.
JOB_CORES_VARIABLE = "DNNEXP_JOB_CORES"
# TensorFlow aligns its buffers to 64 bytes and takes over a NumPy array without a copy
# only if it is aligned the same way (engines.tensorflow.as_tensor); NumPy aligns to 16,
# so data.py allocates its arrays on this boundary.
ALIGNMENT = 64


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_cores() -> int:
    """The cores this job may use: what the sweep's launcher gives each job, at most this process's cores.

    joblib runs ``n_jobs`` jobs at once on this machine, so each gets its share; Ray reserves
    ``ray.remote.num_cpus`` for each (Ray's default: 1); submitit (SLURM, or submitit_local)
    ``cpus_per_task`` (SLURM's default: 1). A single run, or the basic launcher, has them all.
    """
    if JOB_CORES_VARIABLE in os.environ:
        return int(os.environ[JOB_CORES_VARIABLE])
    if not HydraConfig.initialized():
        return cores()
    return launcher_cores(HydraConfig.get().launcher)


def launcher_cores(launcher: Mapping[str, Any]) -> int:
    """The cores each job of a sweep gets from the launcher configured as ``launcher`` (hydra.launcher)."""
    n_cores = cores()
    if "n_jobs" in launcher:
        return max(1, n_cores // joblib_jobs(launcher["n_jobs"], n_cores))
    if "ray" in launcher:
        given = (launcher["ray"].get("remote") or {}).get("num_cpus", 1)
    elif "cpus_per_task" in launcher:
        given = launcher["cpus_per_task"]
    else:
        return n_cores
    return max(1, min(n_cores, int(given or 1)))


def joblib_jobs(n_jobs: int | None, n_cores: int) -> int:
    """Jobs joblib runs at once; its convention: -1 means all cores, -2 all but one, and so on."""
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else n_cores + 1 + n_jobs)


def thread_count(setting: int | str, job_cores: int) -> int:
    """Threads for the training step's operations: the job's cores, less one.

    One core is left over for the input pipeline and the Python loop beside the training
    step: on 2 cores one thread for the step ran the lecture's MLP faster than two on both
    backends, since splitting small operations costs more than it saves (benchmarks/README.md
    has the figures and the commands; docs/performance.md, "Settings").
    """
    if setting != "auto":
        return int(setting)
    return max(1, job_cores - 1)


def loaded() -> str | None:
    """The backend of the Keras this process has imported, or None before Keras loads."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def choose(trainer: TrainerConfig) -> None:
    """Point Keras at ``trainer.backend`` and, on JAX, size XLA's CPU threads; nothing once Keras is loaded."""
    if loaded() is None:
        os.environ.update(environment(trainer, job_cores()))


def environment(trainer: TrainerConfig, job_cores: int) -> dict[str, str]:
    """The variables that settle ``trainer.backend`` and its threads for a job given ``job_cores`` cores.

    XLA's CPU operations take their threads from ``intra_op_parallelism_threads``, and a
    single thread also turns off Eigen's splitting of one matrix product across threads.
    Flags the user set in ``XLA_FLAGS`` stay and win.
    """
    variables = {"KERAS_BACKEND": trainer.backend}
    if trainer.backend == "jax":
        threads = thread_count(trainer.threads, job_cores)
        ours = f"--xla_cpu_multi_thread_eigen={str(threads > 1).lower()} intra_op_parallelism_threads={threads}"
        variables["XLA_FLAGS"] = f"{ours} {os.environ.get('XLA_FLAGS', '')}".strip()
    return variables

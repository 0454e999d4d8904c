"""Which Keras backend a process trains with, and how many threads it gets: settled before Keras loads.

Keras reads its backend (``KERAS_BACKEND``) when it is first imported and cannot change it
afterwards, and XLA sizes its CPU thread pool when JAX's runtime starts. So the entry point
calls :func:`choose` once the config is valid and before ``dnnexp.backend`` is imported.
Neither TensorFlow nor JAX is imported here.
"""

from __future__ import annotations

import os
import sys

from hydra.core.hydra_config import HydraConfig

from dnnexp.config import TrainerConfig

# Set by a dnnexp process for the child it trains a job in (isolated.py): the parallel jobs
# of the parent's sweep, which the child's own Hydra-free run cannot see.
JOBS_VARIABLE = "DNNEXP_PARALLEL_JOBS"


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_jobs() -> int:
    """Jobs of this sweep running at once: the launcher's n_jobs (joblib's launcher), else 1."""
    if JOBS_VARIABLE in os.environ:
        return int(os.environ[JOBS_VARIABLE])
    if not HydraConfig.initialized():
        return 1
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    # joblib's convention: -1 means all cores, -2 all but one, and so on.
    return max(1, n_jobs if n_jobs > 0 else cores() + 1 + n_jobs)


def thread_count(setting: int | str, jobs: int, n_cores: int, spare: int = 1) -> int:
    """Threads for the training step's operations: the job's share of the cores, less ``spare``.

    On TensorFlow one core is left over (``spare=1``) for the input pipeline and Keras'
    Python loop beside the training step: measured on 2 cores, one thread ran the lecture's
    MLP 1.2-1.8x faster than two (splitting small operations costs more than it saves) and
    a 3072-1000-1000 MLP as fast (README "Performance"). JAX dispatches each step without
    waiting for the one before, so its loop needs no core of its own (``spare=0``).
    """
    if setting != "auto":
        return int(setting)
    return max(1, n_cores // jobs - spare)


JAX_SPARE_CORES = 0  # see thread_count


def loaded() -> str | None:
    """The backend of the Keras this process has imported, or None before Keras loads."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def choose(trainer: TrainerConfig) -> None:
    """Point Keras at ``trainer.backend`` and, on JAX, size XLA's CPU threads; nothing once Keras is loaded.

    XLA's CPU operations take their threads from ``intra_op_parallelism_threads``, and a
    single thread also turns off Eigen's splitting of one matrix product across threads.
    Flags the user set in ``XLA_FLAGS`` stay and win.
    """
    if loaded() is not None:
        return
    os.environ["KERAS_BACKEND"] = trainer.backend
    if trainer.backend == "jax":
        threads = thread_count(trainer.threads, parallel_jobs(), cores(), spare=JAX_SPARE_CORES)
        ours = f"--xla_cpu_multi_thread_eigen={str(threads > 1).lower()} intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = f"{ours} {os.environ.get('XLA_FLAGS', '')}".strip()

"""How a run uses the machine: threads, steps per call, distribution strategy, precision.

None of this changes what is computed (mixed precision aside, which rounds to float16),
only how fast. train.py calls :func:`configure_threads` and :func:`build_strategy`
before anything else touches TensorFlow, because TensorFlow fixes its thread pools
and a multi-worker strategy's collectives when its runtime starts.
"""

from __future__ import annotations

import logging
import math
import os

from hydra.core.hydra_config import HydraConfig

from dnnexp.backend import keras, tf
from dnnexp.config import TrainerConfig

log = logging.getLogger(__name__)

# steps_per_execution=auto: enough steps per call that the fixed cost of a call into
# TensorFlow (about a millisecond) disappears, measured best at 50 steps for batch 32
# and 20 for batch 128 on a 2-core CPU (README "Performance").
AUTO_SAMPLES_PER_CALL = 2560
AUTO_MAX_STEPS = 50

# Batches the input pipeline keeps ready ahead of the training step: the step never
# waits while one is gathered and the next is in hand.
PREFETCH_BATCHES = 2

STRATEGIES = {
    "default": tf.distribute.get_strategy,
    "mirrored": tf.distribute.MirroredStrategy,  # one replica per local GPU, or the CPU when there is none
    "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,  # the cluster and this worker's task from TF_CONFIG
}


def steps_per_execution(trainer: TrainerConfig, n_train: int) -> int:
    """Training steps per call into TensorFlow: the wanted number, at most an epoch's steps.

    Several steps per call keep the per-step learning-rate schedules exact (they read
    the optimizer's step count), and each epoch is its own pass over the data, so an
    epoch's last call runs only the steps left and history, early stopping and the
    progress bar stay per epoch.
    """
    steps_per_epoch = math.ceil(n_train / trainer.batch_size)
    wanted = trainer.steps_per_execution
    if wanted == "auto":
        wanted = max(1, min(AUTO_MAX_STEPS, round(AUTO_SAMPLES_PER_CALL / trainer.batch_size)))
    return min(wanted, steps_per_epoch)


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_cores() -> int:
    """The cores this job may use: what the sweep's launcher gives each job, at most this process's cores.

    joblib runs ``n_jobs`` jobs at once on this machine, so each gets its share; Ray reserves
    ``ray.remote.num_cpus`` for each (Ray's default: 1); submitit (SLURM, or submitit_local)
    ``cpus_per_task`` (SLURM's default: 1). A single run, or the basic launcher, has them all.
    """
    n_cores = cores()
    if not HydraConfig.initialized():
        return n_cores
    launcher = HydraConfig.get().launcher
    if "n_jobs" in launcher:
        return max(1, n_cores // joblib_jobs(launcher.n_jobs, n_cores))
    if "ray" in launcher:
        given = (launcher.ray.get("remote") or {}).get("num_cpus", 1)
    elif "cpus_per_task" in launcher:
        given = launcher.cpus_per_task
    else:
        return n_cores
    return max(1, min(n_cores, int(given or 1)))


def joblib_jobs(n_jobs: int | None, n_cores: int) -> int:
    """Jobs joblib runs at once; its convention: -1 means all cores, -2 all but one, and so on."""
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else n_cores + 1 + n_jobs)


def thread_count(setting: int | str, job_cores: int) -> int:
    """Threads for each of TensorFlow's two pools: the job's cores, less one.

    The core left over runs the input pipeline and Keras' Python loop beside the
    training step. Measured on 2 cores, one thread ran the lecture's MLP 1.2-1.8x
    faster than two (splitting small operations costs more than it saves) and a
    3072-1000-1000 MLP as fast (README "Performance").
    """
    if setting != "auto":
        return int(setting)
    return max(1, job_cores - 1)


def configure_threads(setting: int | str) -> int:
    """Size TensorFlow's intra- and inter-op thread pools, and return the intra-op size in force.

    Only possible before TensorFlow's runtime starts. A joblib worker that runs several
    jobs of one sweep asks for the same size each time, which is no change; a different
    size cannot take effect, so it is logged and the run goes on with the pools it has.
    """
    wanted = thread_count(setting, job_cores())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted)
        tf.config.threading.set_inter_op_parallelism_threads(wanted)
    except RuntimeError:
        log.warning("trainer.threads=%s cannot take effect: TensorFlow already runs in this process", wanted)
    return tf.config.threading.get_intra_op_parallelism_threads() or cores()


def pipeline_options() -> tf.data.Options:
    """How dnnexp's input pipelines run: on one thread of their own, without autotuning.

    Gathering a batch of in-memory rows takes microseconds, so one thread (the core that
    ``thread_count`` leaves over) keeps ahead of the training step. tf.data's defaults
    would size its pool to every core and run an autotuner beside it; in parallel sweep
    jobs that work competes with the other job's training step: a joblib sweep of 8
    default runs on 2 cores took 13.2-14.6 s with these options against 15.2-16.6 s
    without (a run's training 1.6 s against 2.0 s), and a single run is as fast.

    Under a multi-worker strategy every worker keeps its share of each batch (in-memory
    data has no files to split).
    """
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def build_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy whose scope the model is built and compiled in."""
    try:
        return STRATEGIES[name]()
    except RuntimeError as err:  # multi_worker after TensorFlow's runtime started (e.g. a reused sweep worker)
        raise RuntimeError(f"trainer.strategy={name} must be the first thing a process does with TensorFlow: {err}") from None


def set_determinism(jit_compile: bool) -> None:
    """Same seed, same metrics: TensorFlow's op determinism, which costs nothing measurable here.

    Keras silently drops XLA when op determinism is on, so a run with jit_compile turns
    it off (the same seed may then differ in the last bits). The switch is global to
    the process and TensorFlow names only the way on, so the way off is its internal one.
    """
    if jit_compile:
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    else:
        tf.config.experimental.enable_op_determinism()


def set_precision(mixed: bool) -> None:
    """Mixed precision computes in float16 and keeps variables in float32 (the output layer stays float32).

    The policy is global to the process, so every run sets it, on or off.
    """
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")

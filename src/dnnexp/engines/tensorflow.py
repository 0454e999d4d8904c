"""The TensorFlow backend: tf.data input pipelines, TensorFlow's thread pools, tf.distribute, op determinism.

``configure`` and ``build_strategy`` run before anything else touches TensorFlow, because
TensorFlow fixes its thread pools and a multi-worker strategy's collectives when its
runtime starts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from dnnexp.backend_setup import ALIGNMENT, cores, job_cores, thread_count
from dnnexp.keras_import import keras, tf
from dnnexp.config import TrainerConfig

log = logging.getLogger(__name__)

# Batches the input pipeline keeps ready ahead of the training step: the step never
# waits while one is gathered and the next is in hand.
PREFETCH_BATCHES = 2

STRATEGIES = {
    "default": tf.distribute.get_strategy,
    "mirrored": tf.distribute.MirroredStrategy,  # one replica per local GPU, or the CPU when there is none
    "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,  # the cluster and this worker's task from TF_CONFIG
}


def configure(trainer: TrainerConfig) -> int:
    """Size TensorFlow's intra- and inter-op thread pools, and return the intra-op size in force.

    Only possible before TensorFlow's runtime starts. A joblib worker that runs several
    jobs of one sweep asks for the same size each time, which is no change; a different
    size cannot take effect, so it is logged and the run goes on with the pools it has.
    """
    wanted = thread_count(trainer.threads, job_cores())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted)
        tf.config.threading.set_inter_op_parallelism_threads(wanted)
    except RuntimeError:
        log.warning("trainer.threads=%s cannot take effect: TensorFlow already runs in this process", wanted)
    return tf.config.threading.get_intra_op_parallelism_threads() or cores()


def jit_compile(trainer: TrainerConfig) -> bool:
    """XLA only when asked for: on a CPU it was slower than plain TensorFlow for the lecture's MLPs."""
    return trainer.jit_compile is True


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


def strategy_scope(model: keras.Model) -> contextlib.AbstractContextManager:
    """The scope of the strategy ``model`` was built in, where its optimizer must be created."""
    return model.distribute_strategy.scope()


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


def set_seed(seed: int) -> None:
    """Seed what a run draws from: Python's and NumPy's generators, from which Keras draws the seeds of
    its initializers and dropout layers.

    ``keras.utils.set_random_seed`` also sets TensorFlow's global seed, and TensorFlow then
    clears its caches of instantiated functions (``context._set_global_seed``), so every job of
    a sweep would instantiate its compiled model's training and evaluation functions again, for
    about as long as two epochs of the lecture's 10-layer net. A run draws nothing from
    TensorFlow's global generator (Keras' random ops take their own seeds, the training order
    is a stateless shuffle), so Keras' function runs once per process, at its first job, and
    later jobs seed Python and NumPy as it does: a job gives the same numbers as the same job
    run alone (tests/test_compiled_models.py). What later jobs leave as the first set it:
    ``keras.utils.get_random_seed()`` and Keras' global ``SeedGenerator``, which only
    ``keras.random`` calls without a seed draw from; no dnnexp model makes one.
    """
    if not SEEDED:
        keras.utils.set_random_seed(seed)
        SEEDED.append(seed)
    random.seed(seed)
    np.random.seed(seed)


SEEDED: list[int] = []  # the seed keras.utils.set_random_seed was given in this process


def gradients(loss_of: Callable[[], tuple], variables: list) -> tuple[list, object]:
    """(d loss / d each of ``variables``, aux) where ``loss_of()`` returns (loss, aux) from the variables' values."""
    with tf.GradientTape() as tape:
        value, aux = loss_of()
    return tape.gradient(value, variables), aux


def step_function(schedule: Callable) -> Callable[[int], float]:
    """``schedule`` as a function of a Python step count, traced once (one call per step of a run is fast)."""
    traced = tf.function(schedule)
    return lambda step: float(traced(tf.constant(step, dtype=tf.int64)))


def prepare_fit(model: keras.Model, train: tuple[int, int] | None = None, evaluations: Sequence[tuple[int, int]] = ()) -> None:
    """Nothing to add to Keras' compiled training loop on TensorFlow (see the JAX engine): tf.function
    traces a step in a fraction of the time XLA takes to compile one."""


# Keras' own: it stops training at the end of the call in which the loss stopped being finite (see the JAX engine).
StopOnNonFiniteLoss = keras.callbacks.TerminateOnNaN


class EpochShuffle(keras.callbacks.Callback):
    """The training batches, one epoch per pass, in an order set by (seed, epoch) alone.

    tf.data's ``shuffle(reshuffle_each_iteration=True)`` draws each epoch's order from a
    generator that starts over in every process, so a run resumed at epoch k would see
    epoch 1's order again. Here ``on_epoch_begin`` stores the epoch's order, a stateless
    shuffle keyed by (seed, epoch), and the pass Keras starts after it reads its batches
    from that order. Each pass is one epoch, so Keras' last call of an epoch simply runs
    the steps that are left, and any ``steps_per_execution`` keeps epochs apart.
    ``shuffle`` (trainer.shuffle): ``epoch`` keys each epoch's order by (seed, epoch), ``once``
    every epoch's by (seed, 0), ``none`` keeps the arrays' order.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: str = "epoch"):
        super().__init__()
        self.seed, self.shuffle = seed, shuffle
        self.order, self.dataset = kept(("shuffled", batch_size), x, y, lambda: _ordered_batches(x, y, batch_size))

    def on_epoch_begin(self, epoch, logs=None):
        order = tf.range(self.order.shape[0], dtype=tf.int64)
        if self.shuffle != "none":
            seed = tf.constant([self.seed, epoch if self.shuffle == "epoch" else 0], tf.int64)
            order = tf.random.experimental.stateless_shuffle(order, seed=seed)
        self.order.assign(order)  # always: a kept pipeline's order variable holds the last job's order


def _ordered_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[tf.Variable, tf.data.Dataset]:
    """(the order variable, the batches of x and y in that order); EpochShuffle sets the order each epoch."""
    order = tf.Variable(tf.range(len(x), dtype=tf.int64), trainable=False)
    n, images, labels = len(x), as_tensor(x), as_tensor(y)
    rows = _rows_of(images, labels)

    @tf.autograph.experimental.do_not_convert
    def batch(step):
        return rows(order[step * batch_size : tf.minimum((step + 1) * batch_size, n)])

    steps = tf.data.Dataset.range(math.ceil(n / batch_size))
    return order, steps.map(batch).prefetch(PREFETCH_BATCHES).with_options(pipeline_options())


# The pipelines of this process's arrays, kept for its next job over the same arrays (a sweep's jobs share
# them: data.load): the first iterator of a new tf.data pipeline waits for TensorFlow to instantiate its
# functions, once per pipeline, which the jobs after the first would otherwise pay at every epoch's start.
KEPT_PIPELINES: dict[tuple, tuple] = {}
KEPT_AT_MOST = 8  # a run makes 4: the shuffled training batches, and the validation, test and training sets in order


def kept(key: tuple, x: np.ndarray, y: np.ndarray, make: Callable[[], object]):
    """``make()``'s pipeline of x and y, made once per arrays and ``key`` (the arrays are never written after loading)."""
    key = (*key, id(x), id(y))
    found = KEPT_PIPELINES.get(key)
    if found is None:
        if len(KEPT_PIPELINES) >= KEPT_AT_MOST:
            KEPT_PIPELINES.clear()  # another dataset's, most likely: let them go
        found = KEPT_PIPELINES[key] = (x, y, make())  # holding the arrays keeps their ids theirs
    return found[2]


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """In-memory arrays -> batches, in a new seeded order every epoch, prefetched while the model trains.

    The arrays enter TensorFlow once; each epoch shuffles only the indices and each batch
    gathers its rows, which costs a fraction of shuffling and batching sample by sample.
    One thread does it (pipeline_options).
    """
    def make() -> tf.data.Dataset:
        indices = tf.data.Dataset.range(len(x))
        if shuffle_seed is not None:
            indices = indices.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
        gathered = indices.batch(batch_size).map(_rows_of(as_tensor(x), as_tensor(y)))
        return gathered.prefetch(PREFETCH_BATCHES).with_options(pipeline_options())

    # A shuffled pipeline's next iterator draws another order: only one in order is kept for the next job.
    return make() if shuffle_seed is not None else kept(("ordered", batch_size), x, y, make)


def _rows_of(images: tf.Tensor, labels: tf.Tensor):
    """index batch -> (images, labels) batch, for tf.data's map."""

    # tf.data rewrites its functions with autograph unless told not to; plain TensorFlow ops
    # need no rewriting, and skipping it saves part of a run's start-up.
    @tf.autograph.experimental.do_not_convert
    def rows(index):
        return tf.gather(images, index), tf.gather(labels, index)

    return rows


def as_tensor(array: np.ndarray) -> tf.Tensor:
    """The array as a tensor, sharing its memory when TensorFlow allows, else a copy.

    Copying Fashion-MNIST's 172 MB of training images takes about 0.4 s here (mostly
    fresh memory pages), as long as a training epoch. TensorFlow shares a NumPy array's
    memory through DLPack, but only for a C-contiguous array aligned to 64 bytes (it
    aborts the process on any other), which data.scale makes the images. The arrays of
    a loaded dataset are never written after loading, so sharing them is safe.
    """
    if array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0 and array.dtype in (np.float32, np.int64):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array)

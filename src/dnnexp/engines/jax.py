"""The JAX backend: NumPy input batches, XLA's threads, the persistent compilation cache.

Keras on JAX is fastest fed NumPy batches: a tf.data pipeline feeding the same loop made
it 1.6-2x slower, and would load TensorFlow (3 s) into a process that needs none of it. So
the batches here are a ``keras.utils.PyDataset`` gathering rows from the in-memory arrays in
the same (seed, epoch) order scheme as the TensorFlow pipeline. XLA's CPU threads are set
through ``XLA_FLAGS`` before JAX starts (backend_setup.choose); JAX's CPU computations are
deterministic, so there is no determinism switch to turn on. A compiled model's training
calls run their steps as one XLA program, compiled ahead of time: that path lives in
engines/jax_fused.py, which ``prepare_fit`` hands the model to.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from dnnexp.backend_setup import cores
from dnnexp.keras_import import keras
from dnnexp.config import TrainerConfig
from dnnexp.engines.jax_fused import fuse_steps

# Compiled programs are kept here across processes (JAX's persistent compilation cache), so
# the jobs of a sweep, and any later run of the same architecture and batch size, load the
# training step instead of compiling it again. JAX_COMPILATION_CACHE_DIR, when set, wins.
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dnnexp" / "jax"


def configure(trainer: TrainerConfig) -> int:
    """Turn on the persistent compilation cache; return XLA's thread count in force.

    The threads were set in ``XLA_FLAGS`` before JAX started (backend_setup.choose); a process
    whose JAX started without them runs on all its cores.
    """
    jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", str(CACHE_DIR)))
    # JAX caches only programs that took a second or more to compile by default; a small
    # network's training step compiles in less, and is what a sweep's jobs share.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    found = re.search(r"intra_op_parallelism_threads=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(found.group(1)) if found else cores()


def jit_compile(trainer: TrainerConfig) -> bool:
    """Always: every step on JAX runs as an XLA program (the config refuses jit_compile=false)."""
    return True


class OneDevice:
    """trainer.strategy=default on JAX: the model lives on JAX's default device (the config refuses the others)."""

    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def build_strategy(name: str) -> OneDevice:
    return OneDevice()


def strategy_scope(model: keras.Model) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def set_determinism(jit_compile: bool) -> None:
    """Nothing to switch on: XLA on a CPU gives the same results for the same program and inputs."""


def set_seed(seed: int) -> None:
    """Seed what a run draws from: Python's, NumPy's and Keras' generators (``keras.utils.set_random_seed``;
    Keras on JAX leaves TensorFlow out, engines/tensorflow.py says why that matters)."""
    keras.utils.set_random_seed(seed)


def gradients(loss_of: Callable[[], tuple], variables: list) -> tuple[list, object]:
    """(d loss / d each of ``variables``, aux) where ``loss_of()`` returns (loss, aux) from the variables' values.

    JAX differentiates functions, not recorded operations: inside Keras' StatelessScope the
    variables read the values ``jax.grad`` passes in, and layers' own updates (batch
    norm's moving averages) stay in the scope instead of changing the model.
    """

    def loss_at(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return loss_of()

    return jax.grad(loss_at, has_aux=True)([v.value for v in variables])


def step_function(schedule: Callable) -> Callable[[int], float]:
    """``schedule`` as a function of a Python step count, compiled once (one call per step of a run is fast)."""
    compiled = jax.jit(schedule)
    return lambda step: float(compiled(step))


def prepare_fit(model: keras.Model, train: tuple[int, int] | None = None, evaluations: Sequence[tuple[int, int]] = ()) -> None:
    """Run each training call's ``steps_per_execution`` steps as one XLA program, and compile ahead of time
    the programs the fit and the evaluations after it will call (engines/jax_fused.py).

    ``train``: (samples, batch size) of the fit; ``evaluations``: the same, for the validation
    the fit runs every epoch, then for each evaluation after it."""
    fuse_steps(model, train, evaluations)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is NaN or infinite (prepare_fit's calls stop it within one).

    Keras' TerminateOnNaN also stops it, but reads every call's loss as it returns: see prepare_fit."""

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            self.model.stop_training = True



class Batches(keras.utils.PyDataset):
    """Batches of in-memory arrays in the order ``order`` (an index array), the last one partial."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None = None):
        super().__init__()
        self.x, self.batch_size = x, batch_size
        self.y = y.astype(np.int32) if y.dtype == np.int64 else y  # JAX computes in 32 bits
        self.order = np.arange(len(x)) if order is None else order

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[index], self.y[index]


class EpochShuffle(keras.callbacks.Callback):
    """The training batches, one epoch per pass, in an order set by (seed, epoch) alone.

    As on TensorFlow, ``on_epoch_begin`` sets the epoch's order before Keras draws its first
    batch, so a run resumed at epoch k sees epoch k's order, whatever ran before it; and as
    there, ``shuffle`` (trainer.shuffle) keys it by (seed, epoch), by (seed, 0) (``once``) or
    keeps the arrays' order (``none``).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: str = "epoch"):
        super().__init__()
        self.seed, self.shuffle = seed, shuffle
        self.dataset = Batches(x, y, batch_size)

    def on_epoch_begin(self, epoch, logs=None):
        if self.shuffle != "none":
            key = [self.seed, epoch if self.shuffle == "epoch" else 0]
            self.dataset.order = np.random.default_rng(key).permutation(len(self.dataset.x))


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> Batches:
    """In-memory arrays -> batches in order, or in one order drawn from ``shuffle_seed``."""
    order = None if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(x))
    return Batches(x, y, batch_size, order)

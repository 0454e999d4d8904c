"""The JAX backend: NumPy input batches, XLA's threads, the persistent compilation cache, fused steps.

Keras on JAX is fastest fed NumPy batches: a tf.data pipeline feeding the same loop made
it 1.6-2x slower, and would load TensorFlow (3 s) into a process that needs none of it. So
the batches here are a ``keras.utils.PyDataset`` gathering rows from the in-memory arrays in
the same (seed, epoch) order scheme as the TensorFlow pipeline. XLA's CPU threads are set
through ``XLA_FLAGS`` before JAX starts (backend_setup.choose); JAX's CPU computations are
deterministic, so there is no determinism switch to turn on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import itertools
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dnnexp.backend_setup import cores
from dnnexp.keras_import import keras
from dnnexp.config import TrainerConfig

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
    """Run each call's ``steps_per_execution`` steps as one XLA program, and compile ahead what the fit will run.

    Keras on JAX loops over the steps of a call in Python, one program launch per step,
    which at batch 32 costs about as much as the step's arithmetic. Here the batches of a
    call are stacked and one compiled loop (``jax.lax.fori_loop``) runs them, carrying the model's
    state from step to step exactly as Keras' own loop does: the same train_step, in the same
    order, so per-step schedules, dropout seeds and the optimizer's step count are unchanged.
    An epoch's shorter last call runs in the same program, padded, its extra steps not run;
    a batch of another size (an epoch's last, partial one) runs as a step of its own.

    A diverging run stops one call after the call whose loss stopped being finite: each call
    reads the loss of the call before it, which is ready or nearly so, while its own steps
    are queued, and the epoch's end reads the last (:class:`StopOnNonFiniteLoss`). Keras'
    TerminateOnNaN reads each call's loss as soon as the call returns, which keeps the host
    from preparing the next call's batches while the device computes: 10-15% of an epoch of
    the lecture's MLP at batch 32 and 128 (benchmarks/peers.py's workload).

    ``train`` (samples, batch size) and ``evaluations`` (the same, for the validation the fit
    runs every epoch, then for each evaluation after it) tell which programs the run needs:
    with them, :class:`AheadOfTime` compiles them on a thread of its own while the first
    call's program compiles and trains.
    """
    step = model.train_step
    steps = model.steps_per_execution

    def fused(state, stacked, count):
        """The first ``count`` of the ``steps`` stacked batches, one train_step after the other.

        The loop runs ``count`` times (a while loop with a bound known only at run time), so an
        epoch's shorter last call runs in the program of the others, padded with copies of its last batch."""
        logs = jax.eval_shape(step, state, jax.tree.map(lambda t: t[0], stacked))[0]
        logs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), logs)

        def body(i, carry):
            data = jax.tree.map(lambda t: jax.lax.dynamic_index_in_dim(t, i, keepdims=False), stacked)
            return step(carry[1], data)

        return jax.lax.fori_loop(0, count, body, (logs, state))

    ahead = AheadOfTime({"train": jax.jit(step, donate_argnums=0), "fused": jax.jit(fused, donate_argnums=0),
                         "test": jax.jit(model.test_step, donate_argnums=0)},
                        planned_programs(steps, train, evaluations) if train else {}, steps)
    full_rows = train[1] if train else None

    def run(state, batches):
        rows = len(batches[0][0])
        if steps == 1 or rows != (full_rows or rows):  # Keras' own step: one batch, or the partial last one
            return ahead.call(("train", rows), state, batches[0])
        padded = batches + batches[-1:] * (steps - len(batches))
        return ahead.call(("fused", rows), state, jax.tree.map(lambda *b: np.stack(b), *padded), np.int32(len(batches)))

    previous_loss = None  # the last call's loss, which the device may still be computing

    def train_function(state, iterator: Iterator):
        nonlocal previous_loss
        iterator = iter(iterator)  # train_on_batch passes a list of one batch
        batches = [next(iterator)]  # StopIteration ends the epoch, as in Keras' own loop
        for _, data in zip(range(steps - 1), iterator):
            if data[0].shape != batches[0][0].shape:
                _, state = run(state, batches)
                batches = []
            batches.append(data)
        logs, state = run(state, batches)
        if previous_loss is not None and not math.isfinite(float(previous_loss)):  # waits for it; this call is queued
            model.stop_training = True
        previous_loss = logs["loss"]
        return logs, state

    def test_function(state, iterator: Iterator):
        """Keras' own evaluation loop on JAX (JAXTrainer._make_function): up to steps_per_execution steps per call."""
        iterator = iter(iterator)
        for data in itertools.chain([next(iterator)], itertools.islice(iterator, steps - 1)):  # StopIteration ends it
            logs, state = ahead.call(("test", len(data[0])), state, data)
        return logs, state

    model.train_function = train_function
    model.test_function = test_function


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is NaN or infinite (prepare_fit stops it within one).

    Keras' TerminateOnNaN also stops it, but reads every call's loss as it returns: see prepare_fit."""

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            self.model.stop_training = True


# XLA options for a program that runs once per epoch or once per run (a partial batch, the
# final evaluations): compiled at XLA's lowest optimization level without its fusion
# emitters, the lecture's training step compiles in 0.2 s instead of 0.9 s and runs in 2.3 ms
# instead of 1.3 ms, measured on the README's 2-core machine (benchmarks/peers.py's workload).
ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


@contextlib.contextmanager
def quick_initializers() -> Iterator[None]:
    """Variables created here draw their first values from programs compiled with :data:`ONCE_OPTIONS`.

    Keras on JAX computes each variable's initial value eagerly, and jax.random's samplers
    compile once per shape with XLA's defaults: 0.4-1.5 s per kernel on the README's 2-core
    machine (a (100, 10) output kernel takes longest), 3 s for the lecture's MLP before its
    first step, in every process that starts on an empty compilation cache. Compiled at the
    lowest optimization level, each draw compiles in about 0.1 s. JAX takes compiler options
    only per jitted function and Keras calls the samplers itself, so the initializer is
    wrapped where Keras calls it (``JaxVariable._initialize_with_initializer``, Keras' own
    hook for a variable's first value). The draws are the same seeds' in the same order;
    the lower optimization level can round their last bits differently, the same way every
    time. Initializers that draw nothing (zeros, ones, a constant) compile little, and one
    drawing from a SeedGenerator changes its state at each draw: they keep Keras' own path,
    as does a variable laid out by a distribution.
    """
    from keras.src.backend.jax.core import JaxVariable

    original = JaxVariable._initialize_with_initializer

    def initialize(variable, initializer):
        if variable._layout is None and isinstance(getattr(initializer, "seed", None), int):
            initializer = _compiled_once(initializer)
        original(variable, initializer)

    JaxVariable._initialize_with_initializer = initialize
    try:
        yield
    finally:
        JaxVariable._initialize_with_initializer = original


def _compiled_once(initializer: keras.initializers.Initializer) -> Callable:
    """A random ``initializer`` as one program compiled with :data:`ONCE_OPTIONS`, its seed an argument.

    Keras' random initializers hold an int seed, which a traced call would bake into the
    program as a constant: each seed of a sweep would then compile its own. Keras' JAX
    samplers also take the seed as the key array ``draw_seed`` makes of the int, so that
    key is the program's argument and the draws are the same."""
    from keras.src.random.seed_generator import draw_seed

    seed = initializer.seed

    def initial_value(shape, dtype=None):
        def draw_initial_value(key):
            initializer.seed = key
            try:
                return initializer(shape, dtype=dtype)
            finally:
                initializer.seed = seed

        return jax.jit(draw_initial_value, compiler_options=ONCE_OPTIONS)(draw_seed(seed))

    return initial_value


class AheadOfTime:
    """Compiles, on a thread of its own, the programs a run calls after its first, in the order it calls them.

    JAX compiles a program the first time it is called with new shapes, and XLA's CPU
    compiler takes about as long for the lecture's MLP as an epoch of training at batch 128
    (0.3-1 s per program on the README's 2-core machine). A first epoch calls four: the
    fused training call, the partial last batch, the full and partial validation batches.
    Which programs come is known from the sizes alone (:func:`planned_programs`), so at the
    first call they are lowered and compiled here while the main thread trains, and the
    programs that run once per epoch or per run are compiled with :data:`ONCE_OPTIONS`. A
    call whose program is still compiling waits for it. JAX has no such queue of its own.
    A program that was not planned, or whose compilation failed, is compiled by its call.
    """

    def __init__(self, functions: dict[str, Callable], plan: dict[tuple[str, int], bool], steps: int):
        self.functions, self.steps = functions, steps
        self.plan = plan  # (kind, batch rows) -> called every step (compiled with XLA's defaults)
        self.compiled: dict[tuple[str, int], concurrent.futures.Future | Callable] = {}

    def call(self, program: tuple[str, int], state, *data):
        """Run ``program`` (kind, batch rows) on ``state`` and ``data``: its compiled executable once ready."""
        if self.plan and not self.compiled:
            self.start(program, state, data)
        compiled = self.compiled.get(program)
        if isinstance(compiled, concurrent.futures.Future):
            try:
                compiled = compiled.result()
            except Exception:  # noqa: BLE001 - the jitted function compiles it itself, and raises what is wrong
                compiled = None
            # A program compiled with XLA's defaults is in the jitted function's cache, whose
            # calls take JAX's C++ fast path (a Compiled object's calls cost 0.5 ms more each).
            self.compiled[program] = compiled = compiled if not self.plan.get(program, True) else None
        return (compiled or self.functions[program[0]])(state, *data)

    def start(self, first: tuple[str, int], state, data) -> None:
        """Start the thread on every planned program but ``first``, then compile ``first`` here.

        ``first`` is traced before the thread starts, so that what Keras builds at its first
        trace (the compiled loss and metrics) is built in one thread only."""
        state = jax.tree.map(shape_of, state)
        batch = jax.tree.map(shape_of, data[0] if first[0] != "fused" else jax.tree.map(lambda t: t[0], data[0]))
        lowered = self.lower(first, state, batch)
        rest = [program for program in self.plan if program != first]
        for program in rest:
            self.compiled[program] = concurrent.futures.Future()
        # Not a daemon: a run that stops early waits at exit for the compilation under way.
        threading.Thread(target=self.compile_rest, args=(rest, state, batch), name="dnnexp-compile").start()
        compiled = compile_once(lowered, None if self.plan.get(first, True) else ONCE_OPTIONS)
        self.compiled[first] = None if self.plan.get(first, True) else compiled

    def compile_rest(self, rest: list[tuple[str, int]], state, batch) -> None:
        """Compile each of ``rest`` in turn; one that another process is compiling comes last (from the cache, by then)."""
        lowered: dict[tuple[str, int], jax.stages.Lowered] = {}
        later = [program for program in rest if not self.compile_ahead(program, lowered, state, batch, wait=False)]
        for program in later:
            self.compile_ahead(program, lowered, state, batch, wait=True)

    def compile_ahead(self, program: tuple[str, int], lowered: dict, state, batch, wait: bool) -> bool:
        """Compile ``program`` into its future; False, doing nothing more, if another process is compiling it and not ``wait``."""
        try:
            if program not in lowered:
                lowered[program] = self.lower(program, state, batch)
            compiled = compile_once(lowered[program], None if self.plan[program] else ONCE_OPTIONS, wait=wait)
        except Exception as err:  # noqa: BLE001 - its call compiles it, and raises what is wrong
            self.compiled[program].set_exception(err)
            return True
        if compiled is not None:
            self.compiled[program].set_result(compiled)
        return compiled is not None

    def lower(self, program: tuple[str, int], train_state, batch):
        """``program`` lowered for the state and batch shapes of the first call (a training call's state)."""
        kind, rows = program
        data = jax.tree.map(lambda s: jax.ShapeDtypeStruct((rows, *s.shape[1:]), s.dtype), batch)
        function = self.functions[kind]
        if kind == "test":
            return function.lower((train_state[0], train_state[1], train_state[3]), data)  # evaluate: no optimizer variables
        if kind == "train":
            return function.lower(train_state, data)
        stacked = jax.tree.map(lambda s: jax.ShapeDtypeStruct((self.steps, *s.shape), s.dtype), data)
        return function.lower(train_state, stacked, jax.ShapeDtypeStruct((), np.int32))


def compile_once(lowered: jax.stages.Lowered, options: dict | None, wait: bool = True) -> jax.stages.Compiled | None:
    """``lowered.compile(options)``, which the processes sharing the persistent cache compile once between them.

    The jobs of a parallel sweep (joblib's workers) start together, and each would compile
    the same programs at the same moment, none finding the others' in the cache yet. So a
    program is compiled under an exclusive lock on a file named by its text and options in
    the cache folder: a process that finds it locked waits, and then loads the cache entry
    that the compiling process wrote; with ``wait=False`` it returns None at once, to come
    back to the program later. JAX itself has no such lock. Without a cache, it just compiles.
    """
    folder = jax.config.jax_compilation_cache_dir
    if not folder:
        return lowered.compile(options)
    key = hashlib.sha256("\n".join([jax.__version__, os.environ.get("XLA_FLAGS", ""), repr(sorted((options or {}).items())),
                                     lowered.as_text()]).encode()).hexdigest()
    locks = Path(folder) / "dnnexp-compiling"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / key, "a") as lock:  # the lock goes with the file's closing
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        return lowered.compile(options)


def planned_programs(steps_per_execution: int, train: tuple[int, int],
                     evaluations: Sequence[tuple[int, int]]) -> dict[tuple[str, int], bool]:
    """{(kind, batch rows): called every step?} of each program a fit and its evaluations call, first call first.

    An epoch of ``n`` samples at batch ``b`` runs its full batches in calls of
    ``steps_per_execution`` steps ("fused"; a single "train" step each when that is 1), then
    the partial batch as one "train" step; an evaluation ("test") runs one program per batch
    size, full and partial. Every step: the full training batches, and the validation's
    (the first of ``evaluations``) full batches.
    """
    n, b = train
    full, partial = divmod(n, b)
    plan = {("fused" if steps_per_execution > 1 else "train", b): True} if full else {}
    if partial:
        plan.setdefault(("train", partial), False)
    for i, (n, b) in enumerate(evaluations):
        full, partial = divmod(n, b)
        if full:
            plan[("test", b)] = plan.get(("test", b), False) or i == 0
        if partial:
            plan.setdefault(("test", partial), False)
    return plan


def shape_of(array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(array), array.dtype)


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

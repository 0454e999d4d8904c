"""The JAX engine's fused path: a call's steps as one XLA program, and its programs compiled ahead of time.

Keras on JAX runs one compiled program per training step, launched from a Python loop
(``JAXTrainer.make_train_function``). :func:`fuse_steps` replaces a compiled model's
``train_function`` and ``test_function`` with ones that run a call's steps in one program
and compile, on a thread of their own, the programs the fit will call after its first.
The plain engine (engines/jax.py) calls it from ``prepare_fit``; nothing else here is
needed to read how a run trains.

What this relies on in Keras (listed in engines/private_api.py): a JAX model's ``fit`` and
``evaluate`` call ``model.train_function(state, iterator)`` / ``model.test_function(state,
iterator)`` when set, and ``train_step`` / ``test_step`` take and return the state tuples
that Keras' guide "Customizing what happens in fit() with JAX" documents.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dnnexp.keras_import import keras

# XLA options for a program that runs once per epoch or once per run (a partial batch, the
# final evaluations): compiled at XLA's lowest optimization level without its fusion
# emitters, the lecture's training step compiles in 0.2 s instead of 0.9 s and runs in 2.3 ms
# instead of 1.3 ms, measured on the README's 2-core machine (benchmarks/peers.py's workload).
ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}



# The programs of the model fused last, by its optimizer (model.compile makes a new one, whose programs
# are new): its next fit without a compile (compiled_models.py) runs them. One only, as the programs
# hold their model.
PROGRAMS: dict[int, tuple[keras.optimizers.Optimizer, AheadOfTime]] = {}


def fuse_steps(model: keras.Model, train: tuple[int, int] | None = None, evaluations: Sequence[tuple[int, int]] = ()) -> None:
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
    from preparing the next call's batches while the device computes (benchmarks/peers.py
    measures what it costs).

    ``train`` (samples, batch size) and ``evaluations`` (the same, for the validation the fit
    runs every epoch, then for each evaluation after it) tell which programs the run needs:
    with them, :class:`AheadOfTime` compiles them on a thread of its own while the first
    call's program compiles and trains. A model fused again without being compiled again (the
    next job of a sweep over seeds, compiled_models.py) runs the programs it has already.
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

    plan = planned_programs(steps, train, evaluations) if train else {}
    _, ahead = PROGRAMS.get(id(model.optimizer), (None, None))
    if ahead is None or ahead.plan != plan or ahead.steps != steps:
        ahead = AheadOfTime({"train": jax.jit(step, donate_argnums=0), "fused": jax.jit(fused, donate_argnums=0),
                             "test": jax.jit(model.test_step, donate_argnums=0)}, plan, steps, lambda: test_state_of(model))
        PROGRAMS.clear()
        PROGRAMS[id(model.optimizer)] = (model.optimizer, ahead)  # holding the optimizer keeps its id its own
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

    def __init__(self, functions: dict[str, Callable], plan: dict[tuple[str, int], bool], steps: int,
                 test_state: Callable[[], tuple]):
        self.functions, self.steps = functions, steps
        self.test_state = test_state  # the shapes of an evaluation's state, read at the first call
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
        states = jax.tree.map(shape_of, state), self.test_state()  # the first call trains (a fit's)
        batch = jax.tree.map(shape_of, data[0] if first[0] != "fused" else jax.tree.map(lambda t: t[0], data[0]))
        lowered = self.lower(first, states, batch)
        rest = [program for program in self.plan if program != first]
        for program in rest:
            self.compiled[program] = concurrent.futures.Future()
        # Not a daemon: a run that stops early waits at exit for the compilation under way.
        threading.Thread(target=self.compile_rest, args=(rest, states, batch), name="dnnexp-compile").start()
        compiled = compile_once(lowered, None if self.plan.get(first, True) else ONCE_OPTIONS)
        self.compiled[first] = None if self.plan.get(first, True) else compiled

    def compile_rest(self, rest: list[tuple[str, int]], states: tuple, batch) -> None:
        """Compile each of ``rest`` in turn; one that another process is compiling comes last (from the cache, by then)."""
        lowered: dict[tuple[str, int], jax.stages.Lowered] = {}
        later = [program for program in rest if not self.compile_ahead(program, lowered, states, batch, wait=False)]
        for program in later:
            self.compile_ahead(program, lowered, states, batch, wait=True)

    def compile_ahead(self, program: tuple[str, int], lowered: dict, states: tuple, batch, wait: bool) -> bool:
        """Compile ``program`` into its future; False, doing nothing more, if another process is compiling it and not ``wait``."""
        try:
            if program not in lowered:
                lowered[program] = self.lower(program, states, batch)
            compiled = compile_once(lowered[program], None if self.plan[program] else ONCE_OPTIONS, wait=wait)
        except Exception as err:  # noqa: BLE001 - its call compiles it, and raises what is wrong
            self.compiled[program].set_exception(err)
            return True
        if compiled is not None:
            self.compiled[program].set_result(compiled)
        return compiled is not None

    def lower(self, program: tuple[str, int], states: tuple, batch):
        """``program`` lowered for the batch shapes of the first call, and ``states``: (a training call's, an evaluation's)."""
        (train_state, test_state), (kind, rows) = states, program
        data = jax.tree.map(lambda s: jax.ShapeDtypeStruct((rows, *s.shape[1:]), s.dtype), batch)
        function = self.functions[kind]
        if kind == "test":
            return function.lower(test_state, data)
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




def test_state_of(model: keras.Model) -> tuple:
    """The shapes of the state ``model.test_step`` takes: its trainable, non-trainable and metrics variables,
    in the order Keras' JAX guide gives, from the model's public variable lists (their shapes
    stay while the fit holds their values)."""
    def shapes(variables):
        return [jax.ShapeDtypeStruct(tuple(v.shape), jnp.dtype(v.dtype)) for v in variables]

    return shapes(model.trainable_variables), shapes(model.non_trainable_variables), shapes(model.metrics_variables)

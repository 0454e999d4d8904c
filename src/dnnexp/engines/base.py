"""What an engine provides: the interface each backend's module (engines/tensorflow.py, engines/jax.py) fills.

An engine is a module, not a class: ``dnnexp.engines.engine`` is the module of the backend
this process loaded, and a module conforms to a Protocol by having its members (PEP 544).
The callers are train.py (set-up, fit, evaluation), diagnostics.py (gradients), lr_tools.py
(the finder's batches, the schedule plot). tests/test_engines.py checks that both modules
provide every member below, with the same parameters.

Nothing here imports Keras or a backend: the annotations are strings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from keras import Model, callbacks

    from dnnexp.config import TrainerConfig


@runtime_checkable
class Engine(Protocol):
    """The members of an engine module, each with what it does; everything else in dnnexp is written once, in Keras."""

    # Set-up, before the backend's runtime starts.
    def configure(self, trainer: TrainerConfig) -> int:
        """Size the backend's threads (and caches) for this job; return the threads of the training step in force."""

    def jit_compile(self, trainer: TrainerConfig) -> bool:
        """Whether ``model.compile`` asks for XLA (``jit_compile=``) for this config."""

    def set_determinism(self, jit_compile: bool) -> None:
        """Make the same seed give the same metrics, as far as XLA's use (``jit_compile``) allows."""

    def set_seed(self, seed: int) -> None:
        """Seed what a run draws from (its initial weights, dropout's masks), as ``keras.utils.set_random_seed`` does."""

    # Devices.
    def build_strategy(self, name: str) -> Any:
        """The distribution strategy ``trainer.strategy`` names: ``.scope()`` and ``.num_replicas_in_sync``."""

    def strategy_scope(self, model: Model) -> contextlib.AbstractContextManager:
        """The scope of the strategy ``model`` was built in, where its optimizer is created and it is compiled."""

    # Input pipelines.
    EpochShuffle: type[callbacks.Callback]
    """Callback(x, y, batch_size, seed) whose ``.dataset`` gives one epoch's batches in an order set by (seed, epoch) alone."""

    def pipeline(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> Any:
        """In-memory arrays -> batches Keras' fit/evaluate take: in order, or reshuffled from ``shuffle_seed``."""

    # Training.
    def prepare_fit(self, model: Model, train: tuple[int, int] | None = None,
                    evaluations: Sequence[tuple[int, int]] = ()) -> None:
        """After ``model.compile``: anything the backend adds to Keras' loop, given the fit's and evaluations' (samples, batch)."""

    StopOnNonFiniteLoss: type[callbacks.Callback]
    """Callback() that stops the fit soon after the loss stops being finite (how soon depends on the engine)."""

    # Tools outside the fit.
    def gradients(self, loss_of: Callable[[], tuple], variables: list) -> tuple[list, object]:
        """(d loss / d each of ``variables``, aux), where ``loss_of()`` returns (loss, aux) from the variables' values."""

    def step_function(self, schedule: Callable) -> Callable[[int], float]:
        """A learning-rate ``schedule`` as a fast function of a Python step count (compiled once)."""


# The member names, for the conformance test and for readers: the annotated classes and the methods.
MEMBERS = tuple(sorted({*Engine.__annotations__, *(name for name, value in vars(Engine).items()
                                                     if callable(value) and not name.startswith("_"))}))

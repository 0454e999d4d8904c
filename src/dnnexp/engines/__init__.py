"""What runs differently on each Keras backend, one module per backend with the same names.

``engine`` is the module of the backend this process loaded (dnnexp.keras_import): the input
pipeline (``EpochShuffle``, ``pipeline``), threads and runtime set-up (``configure``),
distribution (``build_strategy``, ``strategy_scope``), determinism, XLA (``jit_compile``),
gradients for the diagnostics, a compiled schedule for the schedule plot, and the stop of a
diverging run (``StopOnNonFiniteLoss``). Everything else in dnnexp is written once, in Keras.
"""

from __future__ import annotations

import importlib

from dnnexp.keras_import import BACKEND

engine = importlib.import_module(f"dnnexp.engines.{BACKEND}")

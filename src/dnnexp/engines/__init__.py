"""What runs differently on each Keras backend, one module per backend with the same names.

``engine`` is the module of the backend this process loaded (dnnexp.keras_import). Its members,
each with what it does, are written down once as the :class:`~dnnexp.engines.base.Engine`
Protocol (engines/base.py): threads and runtime set-up, distribution, determinism, XLA, the
input pipelines, what the backend adds to Keras' fit, the stop of a diverging run, gradients
for the diagnostics and a compiled schedule for the schedule plot. Everything else in dnnexp
is written once, in Keras. The private names of other libraries that dnnexp relies on are
listed in engines/private_api.py.
"""

from __future__ import annotations

import importlib

from dnnexp.engines.base import Engine
from dnnexp.keras_import import BACKEND

engine: Engine = importlib.import_module(f"dnnexp.engines.{BACKEND}")  # type: ignore[assignment]  (a module conforms by its members)

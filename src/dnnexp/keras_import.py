"""Keras on the backend chosen for this process (TensorFlow unless told), imported once, quietly.

The backend is ``KERAS_BACKEND``, which the entry point sets from ``trainer.backend``
(backend_setup.py) before this module loads; without it dnnexp takes TensorFlow, whatever
Keras' own ``keras.json`` says. ``tf`` is TensorFlow on the TensorFlow backend and None on
JAX, where dnnexp keeps TensorFlow out of the process (see ``_import_keras_without_tensorflow``).

TensorFlow's C++ runtime writes start-up notices (oneDNN, CUDA drivers not found)
straight to file descriptor 2 before its own log level applies, so
TF_CPP_MIN_LOG_LEVEL cannot hide them. Unless the user set TF_CPP_MIN_LOG_LEVEL,
the import and the device scan run with descriptor 2 pointed at /dev/null;
Python exceptions are unaffected and print after it is restored.

The import runs with Python's garbage collector paused. TensorFlow and Keras create
millions of long-lived objects on import, and each full collection the import would
trigger walks all of them, a sizable share of the import (benchmarks/README.md),
paid by every process that trains (each joblib worker too). Afterwards they are
frozen (``gc.freeze``), so the run's own collections skip them, and a process that has
loaded TensorFlow also exits faster: see ``_exit_without_final_gc``.

TensorFlow's "triggered tf.function retracing" warning is dropped (``_drop_retracing_warning``).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os


def _import_quickly():
    """Import with the garbage collector paused, then freeze what the import created."""
    gc.disable()
    try:
        return _import_quietly()
    finally:
        gc.freeze()
        gc.enable()


def _import_quietly():
    if BACKEND == "jax":
        return None, _import_keras_without_tensorflow()
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import keras
        import tensorflow as tf

        return tf, keras
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    return tf, keras


def _import_keras_without_tensorflow():
    """Keras on JAX, told that TensorFlow is absent even where it is installed.

    Keras imports TensorFlow, when it finds it, to seed it (``keras.utils.set_random_seed``)
    and to check object types while saving a model, though a JAX run uses it for neither, and
    importing it costs seconds (benchmarks/startup.py prints both imports). Keras asks through
    its lazy module's ``available``; answering no keeps the import out. A feature that does
    need TensorFlow (the TensorBoard callback) still imports it when it first uses it.
    """
    import keras
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False
    # JAX logs at INFO that it found no TPU, which Hydra's logging would print in every run.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    return keras


def _exit_without_final_gc() -> None:
    """At interpreter exit, move every object out of the garbage collector's sight.

    After a run, Python's shutdown spends a noticeable share of a short run's wall time
    (benchmarks/README.md) in full garbage collections
    over the millions of objects TensorFlow and Keras create, only to free memory the
    operating system takes back anyway. Frozen objects are skipped by those collections;
    the other exit handlers (logging's flush among them) still run, and every file
    dnnexp writes is closed before this point.
    """
    gc.freeze()


def _drop_retracing_warning(record: logging.LogRecord) -> bool:
    """False for TensorFlow's "N out of the last M calls to <function> triggered tf.function retracing".

    TensorFlow counts traces per Python function, across all the tf.function objects made
    from it (polymorphic_function's ``_FrequentTracingDetector``, keyed by the code object).
    Keras makes a new train and test function from the same code for every model, and each
    traces on its first calls, so a sweep's third short job in one process (``dnnexp -m
    dataset.limit=400 trainer.epochs=1 activation=relu,elu,selu``) warns about retracing it
    cannot avoid and a user cannot act on: every new model must be traced once. Only this
    message is dropped; every other TensorFlow warning still shows.
    """
    return "triggered tf.function retracing" not in record.getMessage()


BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
tf, keras = _import_quickly()
if tf is not None:
    tf.get_logger().addFilter(_drop_retracing_warning)
atexit.register(_exit_without_final_gc)  # runs before the collections of the interpreter's shutdown

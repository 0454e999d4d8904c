"""TensorFlow and Keras, imported once, quietly.

TensorFlow's C++ runtime writes start-up notices (oneDNN, CUDA drivers not found)
straight to file descriptor 2 before its own log level applies, so
TF_CPP_MIN_LOG_LEVEL cannot hide them. Unless the user set TF_CPP_MIN_LOG_LEVEL,
the import and the device scan run with descriptor 2 pointed at /dev/null;
Python exceptions are unaffected and print after it is restored.
"""

from __future__ import annotations

import os


def _import_quietly():
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


tf, keras = _import_quietly()

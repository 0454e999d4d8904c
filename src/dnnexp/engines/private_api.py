"""Every private name of another library that dnnexp relies on, in one place, with the versions it was checked on.

A private name can change in any release, so pyproject.toml bounds each library below above
the release these entries were checked on, and tests/test_engines.py resolves every entry:
when an upgrade removes one, that test names it. To raise a bound, upgrade, run that test and
the tests of each user listed, then change ``checked`` here and the bound in pyproject.toml.

| library | private name | user | why no public one |
|---|---|---|---|
| tensorflow <2.22 (checked on 2.21.0) | ``tensorflow.python.framework.config.disable_op_determinism`` | engines/tensorflow.py ``set_determinism`` | TensorFlow names only the way on (``tf.config.experimental.enable_op_determinism``) |
| keras <3.16 (checked on 3.15.1) | ``JAXTrainer.make_train_function`` / ``make_test_function`` keep a ``train_function`` / ``test_function`` set before ``fit``, and call it as ``(state, iterator) -> (logs, state)`` | engines/jax_fused.py ``fuse_steps`` | Keras documents overriding ``train_step``, not the loop that calls it; the state tuples are the documented ``train_step`` ones |
| keras <3.16 (checked on 3.15.1) | ``keras.src.utils.module_utils.tensorflow._available`` | keras_import.py (Keras on JAX without importing TensorFlow) | Keras imports TensorFlow whenever it is installed: 5.08 s against 2.39 s for a JAX process's Keras import and seeding (benchmarks/README.md) |
| jax <0.11 (checked on 0.10.2) | the logger name ``jax._src.xla_bridge`` | keras_import.py (silences "no TPU found") | JAX logs it under its private module's name; without it every JAX run prints the line (a logger name: if it changes, the line shows again, nothing breaks) |
| hydra-core <1.4 (checked on 1.3.8) | ``hydra._internal.utils.run_and_report`` | cli.py (the message of a config error) | Hydra prints its errors there and offers no hook; without it a typo prints Hydra's several-line error and exits 1 instead of one line and exit 2 (tests/test_bad_input.py) |
| hydra-core <1.4 (checked on 1.3.8) | ``hydra._internal.core_plugins.basic_sweeper.BasicSweeper`` (``split_arguments``) | run_folder.py ``check_grid`` (a sweep's jobs, as the basic sweeper splits them) | Hydra has no public parser of a sweep's overrides into jobs; a copy of its order could drift from it and refuse or overwrite the wrong job folders (tests/test_resume.py) |
| numpy <3 (checked on 2.4.6; data.py names NumPy 1's and 2's) | ``numpy.core.multiarray._reconstruct``, ``numpy._core.multiarray._reconstruct`` and the names beside them in data.py's ``_BatchUnpickler.ALLOWED`` | data.py (the allow-list of a pickled CIFAR-10 batch) | the real files name NumPy 1's; pickle calls what the allow-list lets through, so each must still resolve |

The standard library's ``logging._handlerList`` (api.py: a run from Python removes the handlers
it added from that list, and puts back the ones that were there) is read and written; it has been
in ``logging`` since Python 2. Tests also use ``hydra._internal.config_loader_impl.ConfigLoaderImpl`` (tests/conftest.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateName:
    module: str  # imported as is
    attribute: str  # dotted path from the module; "" for the module alone
    library: str  # its distribution, whose version pyproject.toml bounds above
    checked: str  # the release it was last checked on


PRIVATE_NAMES = (
    PrivateName("tensorflow.python.framework.config", "disable_op_determinism", "tensorflow", "2.21.0"),
    PrivateName("keras.src.backend.jax.trainer", "JAXTrainer.make_train_function", "keras", "3.15.1"),
    PrivateName("keras.src.backend.jax.trainer", "JAXTrainer.make_test_function", "keras", "3.15.1"),
    PrivateName("keras.src.utils.module_utils", "tensorflow._available", "keras", "3.15.1"),
    PrivateName("jax._src.xla_bridge", "", "jax", "0.10.2"),
    PrivateName("hydra._internal.utils", "run_and_report", "hydra-core", "1.3.8"),
    PrivateName("hydra._internal.core_plugins.basic_sweeper", "BasicSweeper.split_arguments", "hydra-core", "1.3.8"),
    PrivateName("hydra._internal.config_loader_impl", "ConfigLoaderImpl._apply_overrides_to_config", "hydra-core", "1.3.8"),
    *(PrivateName(module, name, "numpy", "2.4.6") for module, name in (
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"))),
)


def resolve(name: PrivateName) -> object:
    """The object ``name`` names; raises ImportError or AttributeError when the library no longer has it."""
    found = importlib.import_module(name.module)
    for part in filter(None, name.attribute.split(".")):
        found = getattr(found, part)
    return found

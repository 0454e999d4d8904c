"""What every job of a joblib sweep imports, imported once by the fork server its workers are forked from.

The server (dnnexp.server.start_fork_server) imports this module with the jobs' backend set,
or, started before the sweep's config existed (dnnexp.server.EarlyServer), sets them here
first; each worker it forks starts with Hydra's job machinery, dnnexp, Keras and its
backend loaded (its runtime not yet started, which must not be forked).
"""

from dnnexp.server import receive_variables

receive_variables()
try:
    from dnnexp import cli, data, train  # noqa: F401
    from dnnexp.engines import engine  # noqa: F401  (Keras and its backend)
except Exception:  # noqa: BLE001, S110  (a worker imports them again, and its first job reports what fails)
    pass

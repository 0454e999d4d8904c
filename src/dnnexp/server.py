"""The fork server of a joblib sweep's workers, and the ``dnnexp`` command that can start it first.

A joblib sweep's workers are forks of one server process (multiprocessing's
``forkserver``) that imported dnnexp, Keras and its backend once (dnnexp.preload, and
dnnexp.warm for why). This module imports neither Hydra nor joblib, so the command can
start the server before it imports them itself: :func:`command` is the ``dnnexp``
entry point.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

# A fork server started before the sweep's config exists (EarlyServer) waits for the file named
# here, which will hold the jobs' variables, as long as the process named by SERVER_PARENT lives.
SERVER_VARIABLES = "DNNEXP_SERVER_VARIABLES"
SERVER_PARENT = "DNNEXP_SERVER_PARENT"
# What that server imports while it waits: what a job imports whatever its backend and threads
# (Keras imports them all), heaviest first. numpy's OpenBLAS and scikit-learn's OpenMP size their
# thread pools as they load, so receive_variables sizes them again once the variables come.
WAITING_IMPORTS = ("numpy", "scipy.linalg", "pandas", "sklearn.model_selection", "matplotlib", "h5py",
                   "rich.progress", "dnnexp.cli", "dnnexp.data")


def command() -> None:
    """``dnnexp ARGS``: the workers' server of a joblib sweep starts at once, then the command runs (dnnexp.cli)."""
    EarlyServer.start(sys.argv[1:])  # beside the imports and Hydra's composing
    from dnnexp.cli import main

    main()


def start_fork_server(variables: dict[str, str]) -> None:
    """Start the fork server with ``variables`` added to this process's environment; it imports dnnexp.preload.

    The server imports in the background: the main process goes on with its checks, and
    the launcher's first Parallel call waits for the server only if it is not ready yet.
    """
    from multiprocessing import forkserver

    multiprocessing.set_forkserver_preload(["dnnexp.preload"])
    with variables_set(variables):  # the server inherits this process's environment when it starts
        forkserver.ensure_running()


class EarlyServer:
    """The fork server of dnnexp's command, started from its command line before Hydra composes the config.

    Composing the primary config takes the command's first second on the README's 2-core
    machine, and the server's imports (Keras, its backend, scikit-learn, pandas) 3 s more, which the
    first jobs wait for. The jobs' variables are known only from the composed config, but
    most of the import needs none: so a command line that asks for a joblib sweep starts the
    server at once, on :data:`WAITING_IMPORTS`, and dnnexp.warm.WarmWorkers sends it the
    variables (:meth:`send`) when the sweep starts; it then imports the rest with them
    (:func:`receive_variables`). multiprocessing starts a server only with the variables of
    the process that starts it, and offers no way to send it more, which is why this is written here.
    """

    channel: ClassVar[Path | None] = None  # the file the waiting server reads its variables from
    sent: ClassVar[Path | None] = None  # its folder, once sent: the server removes it, or :meth:`clean_up` if it died

    @classmethod
    def start(cls, args: Sequence[str]) -> None:
        """Start the server if ``args`` (a dnnexp command line) ask for a joblib sweep."""
        multirun = "-m" in args or "--multirun" in args
        if not multirun or not any(arg.lstrip("+") == "hydra/launcher=joblib" for arg in args):
            return  # a preset that picks joblib gets its server when the sweep starts
        if "forkserver" not in multiprocessing.get_all_start_methods():
            return
        cls.channel = Path(tempfile.mkdtemp(prefix="dnnexp-server-")) / "variables.json"
        start_fork_server({SERVER_VARIABLES: str(cls.channel), SERVER_PARENT: str(os.getpid())})

    @classmethod
    def send(cls, variables: dict[str, str] | None) -> bool:
        """Hand the waiting server the jobs' ``variables`` (None: it exits unused); False if no server waits."""
        channel, cls.channel = cls.channel, None
        if channel is None:
            return False
        staged = channel.with_suffix(".staged")
        staged.write_text(json.dumps(variables))
        os.replace(staged, channel)  # the server reads all of it or waits
        cls.sent = channel.parent
        return True

    @classmethod
    def clean_up(cls) -> None:
        """Remove the folder of the variables sent, if a server that died before it read them left it (the sweep has ended)."""
        if cls.sent is not None:
            shutil.rmtree(cls.sent, ignore_errors=True)
            cls.sent = None


def receive_variables() -> None:
    """In a fork server that :class:`EarlyServer` started: import :data:`WAITING_IMPORTS` until the
    jobs' variables come, then set them; exit if none come or the command that started it ends.

    A server started with its variables (``start_fork_server`` when the sweep starts) returns at once.
    """
    channel = os.environ.pop(SERVER_VARIABLES, None)
    if channel is None:
        return
    parent, channel = int(os.environ.pop(SERVER_PARENT)), Path(channel)
    for module in WAITING_IMPORTS:
        if channel.exists():
            break  # the rest come with Keras
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    while not channel.exists():
        if os.getppid() != parent:
            raise SystemExit(0)  # the command ended before its sweep started
        time.sleep(0.005)
    variables = json.loads(channel.read_text())
    shutil.rmtree(channel.parent, ignore_errors=True)
    if variables is None:
        raise SystemExit(0)
    os.environ.update(variables)
    from threadpoolctl import threadpool_limits

    # The thread pools already loaded take joblib's limits, as those loaded from now on read them.
    threadpool_limits({"blas": _int_or_none(variables.get("OPENBLAS_NUM_THREADS")),
                       "openmp": _int_or_none(variables.get("OMP_NUM_THREADS"))})


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value)


@contextlib.contextmanager
def variables_set(variables: Mapping[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process's environment for the block, then restore each as it was (or unset)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

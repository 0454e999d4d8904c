"""Runs `dnnexp ARGS` on JAX in this process and writes which programs XLA compiled, in which thread.

Usage: python jax_compiles.py OUT.json ARGS...; JAX_COMPILATION_CACHE_DIR should name an empty
folder, so that every program the run calls is compiled (a cache hit compiles nothing).
"""

from __future__ import annotations

import json
import sys
import threading

import jax

from dnnexp.cli import main

compiles: list[dict[str, str]] = []


def listen(event: str, seconds: float, **kwargs) -> None:
    if event.endswith("backend_compile_duration"):
        compiles.append({"function": str(kwargs.get("fun_name")), "thread": threading.current_thread().name})


if __name__ == "__main__":
    out, sys.argv = sys.argv[1], ["dnnexp", *sys.argv[2:]]
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        main()
    except SystemExit as exit_:
        if exit_.code:
            raise
    with open(out, "w") as f:
        json.dump(compiles, f)

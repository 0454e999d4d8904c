"""Runs `dnnexp ARGS` on JAX in this process and writes which programs XLA compiled, in which thread.

Usage: python jax_compiles.py OUT.json ARGS...; with JAX_COMPILATION_CACHE_DIR naming an empty
folder, every program the run calls is compiled or, if another process compiled it into that
folder first, loaded ("cache": "hit"; JAX reports a load as a compilation too).
"""

from __future__ import annotations

import json
import sys
import threading

import jax

from dnnexp.cli import main

compiles: list[dict[str, str]] = []
cache: dict[str, str] = {}  # thread -> whether the cache held the program it compiles (JAX says so just before)


def listen(event: str, seconds: float, **kwargs) -> None:
    if event.endswith("backend_compile_duration"):
        thread = threading.current_thread().name
        compiles.append({"function": str(kwargs.get("fun_name")), "thread": thread, "cache": cache.pop(thread, "off")})


def listen_to_cache(event: str, **kwargs) -> None:
    if event.endswith(("/cache_hits", "/cache_misses")):
        cache[threading.current_thread().name] = "hit" if event.endswith("hits") else "miss"


if __name__ == "__main__":
    out, sys.argv = sys.argv[1], ["dnnexp", *sys.argv[2:]]
    jax.monitoring.register_event_duration_secs_listener(listen)
    jax.monitoring.register_event_listener(listen_to_cache)
    try:
        main()
    except SystemExit as exit_:
        if exit_.code:
            raise
    with open(out, "w") as f:
        json.dump(compiles, f)

"""What the benchmarks share: the checkout's dnnexp, timed subprocesses with their peak memory.

Benchmarks measure the code of the checkout they sit in, not whatever dnnexp is
installed, so they put its src/ first on the path (theirs and their subprocesses').
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def dnnexp(*args: str) -> list[str]:
    """The command line of `dnnexp ARGS`, run from this checkout."""
    return [sys.executable, "-m", "dnnexp.cli", *args]


@dataclass
class Timed:
    seconds: float
    peak_rss_mb: float  # the largest resident set of the process or any of its children
    returncode: int
    stdout: str
    stderr: str


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd`` (with ``env`` added to the environment), with its wall time and peak resident memory
    (os.wait4's ru_maxrss, in KiB on Linux)."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env={**ENV, **(env or {})}, stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timed(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read_text(), err.read_text())


def machine() -> str:
    """One line saying where the numbers come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {cores} cores, load average {load}, Python {platform.python_version()}"
